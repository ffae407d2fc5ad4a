"""The network lock for TCP repair: while an established connection is checkpointed,
packets its peer sends to the dumped end are dropped (nftables, table `inet lxc_cr`),
so that the peer sees a pause rather than a reset.  The restore lifts the lock for
each connection once it is out of repair mode, and removes the table when empty.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess

from .errors import UnsupportedError

log = logging.getLogger("lxc_cr.netlock")
NFT_TABLE = "lxc_cr"


def _nft(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)


def lock(name: str, element: str) -> bool:
    """Drop what the peer sends to the dumped end until the restore has rebuilt it."""
    if shutil.which("nft") is None:
        log.warning("nft not found: the network is not locked; packets the peer sends while the "
                    "connection is checkpointed will reset it")
        return False
    if subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True).returncode != 0:
        r = _nft(f"""add table inet {NFT_TABLE}
add set inet {NFT_TABLE} conn4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}
add set inet {NFT_TABLE} conn6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}
add chain inet {NFT_TABLE} lock {{ type filter hook input priority -300; policy accept; }}
add rule inet {NFT_TABLE} lock ip saddr . tcp sport . ip daddr . tcp dport @conn4 drop
add rule inet {NFT_TABLE} lock ip6 saddr . tcp sport . ip6 daddr . tcp dport @conn6 drop
""")
        if r.returncode != 0:
            raise UnsupportedError(f"cannot lock the network with nftables: {r.stderr.strip()}")
    r = _nft(f"add element inet {NFT_TABLE} {name} {{ {element} }}\n")
    if r.returncode != 0:
        raise UnsupportedError(f"cannot lock the network with nftables: {r.stderr.strip()}")
    return True


def unlock(name: str, element: str) -> None:
    """Let the peer's packets through again; the table goes once no connection is locked."""
    r = _nft(f"delete element inet {NFT_TABLE} {name} {{ {element} }}\n")
    if r.returncode != 0:
        log.warning("could not unlock %s in nftables: %s", element, r.stderr.strip())
    listing = subprocess.run(["nft", "-j", "list", "table", "inet", NFT_TABLE], capture_output=True, text=True)
    if listing.returncode == 0:
        items = json.loads(listing.stdout).get("nftables", [])
        if not any(item.get("set", {}).get("elem") for item in items):
            _nft(f"delete table inet {NFT_TABLE}\n")
