"""A tree's own network namespace: its devices, addresses, routes, sysctls and nftables ruleset.

Netlink goes through engine/netlink.py (pyroute2's messages, without its asyncio layer).

Dump: the dumper joins the tree's network namespace for the whole dump, so
that everything it asks about sockets (sock_diag, getsockopt on pidfd_getfd'ed
sockets) and the network lock (engine/netlock.py) happen there.  Before it
joins, it keeps a netlink socket in its own namespace, to read what lies
outside (a veth's peer and bridge, a macvlan's lower device) as hints.
Recorded: every device (engine/netdev.py and its kind modules; other kinds are
refused by name), every address (IPv6 ones the kernel makes itself, temporary
or from router advertisements, are left to the kernel), every route of every
table but those the kernel derives from addresses, the sysctls of SYSCTLS, and
the nftables ruleset.

Restore (`restore()`, in the orchestrator, before any file is opened): the
orchestrator opens a netlink socket that stays in the host namespace, then makes
the new namespace with unshare(CLONE_NEWNET) and stays in it (the tree it forks is
born there).  In it, in this order: the devices (host ends named by `--external`),
the sysctls, the nftables ruleset and the lock of every TCP connection the
dump locked (so that the peer's retransmissions cannot reach the namespace
before the socket is back: engine/kinds/inetsk.py lifts each), the links' state,
addresses (IPv6 without duplicate address detection: they were in use), and
routes.  The HostDevices it returns undo the host side if the restore fails.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import socket

from . import kernel as k
from . import netdev
from .errors import ImageError, PlanError, RestoreError, UnsupportedError, fault_point
from .netlink import NetlinkError, Rtnl, nft_tables
from .namespaces import own, visiting

log = logging.getLogger("lxc_cr.netns")

RTPROT_KERNEL, RTPROT_RA = 2, 9
RTM_F_CLONED, RTNH_F_ONLINK = 0x200, 0x4
IFA_F_TEMPORARY, IFA_F_NODAD, IFA_F_PERMANENT = 0x01, 0x02, 0x80
# what an address keeps: not its DAD state (tentative, failed, optimistic), deprecation or permanence
IFA_F_KEPT = 0x02 | 0x10 | 0x100 | 0x200 | 0x400
ROUTE_REFUSED = {"RTA_MULTIPATH": "a multipath route", "RTA_VIA": "a route via another address family",
                 "RTA_ENCAP": "an encapsulating route"}

# The per-namespace sysctls carried, under /proc/sys.  CONF ones exist for `all`,
# `default` and each device, and are written in that order: writing `all` resets
# every device's value.
SYSCTLS = [
    "net/ipv4/ip_forward", "net/ipv4/ip_local_port_range", "net/ipv4/ip_local_reserved_ports",
    "net/ipv4/ip_unprivileged_port_start", "net/ipv4/ping_group_range", "net/ipv4/ip_default_ttl",
    "net/ipv4/ip_no_pmtu_disc", "net/ipv4/ip_nonlocal_bind", "net/ipv4/icmp_echo_ignore_all",
    "net/ipv4/icmp_echo_ignore_broadcasts", "net/ipv4/tcp_syncookies", "net/ipv4/tcp_timestamps",
    "net/ipv4/tcp_sack", "net/ipv4/tcp_window_scaling", "net/ipv4/tcp_ecn", "net/ipv4/tcp_fin_timeout",
    "net/ipv4/tcp_keepalive_time", "net/ipv4/tcp_keepalive_intvl", "net/ipv4/tcp_keepalive_probes",
    "net/ipv4/tcp_syn_retries", "net/ipv4/tcp_synack_retries", "net/ipv4/tcp_retries2",
    "net/ipv4/tcp_tw_reuse", "net/ipv4/tcp_mtu_probing", "net/ipv4/tcp_congestion_control",
    "net/ipv6/bindv6only", "net/ipv6/ip_nonlocal_bind", "net/core/somaxconn", "net/unix/max_dgram_qlen",
]
CONF = {
    "ipv4": ["forwarding", "rp_filter", "accept_redirects", "send_redirects", "secure_redirects",
             "accept_source_route", "accept_local", "route_localnet", "proxy_arp", "arp_ignore",
             "arp_announce", "arp_filter", "log_martians"],
    "ipv6": ["disable_ipv6", "forwarding", "accept_ra", "accept_redirects", "autoconf", "use_tempaddr",
             "accept_dad", "hop_limit"],
}
SYSCTL_VALUE = re.compile(r"^[\w .,:\t-]{0,4096}$")


def _sysctl_names(devices) -> list[str]:
    """Every sysctl carried, in the order they are written."""
    names = list(SYSCTLS)
    for where in ["all", "default", *devices]:
        for family, keys in CONF.items():
            names += [f"net/{family}/conf/{where}/{key}" for key in keys]
    return names


def enter(root: int) -> None:
    fd = os.open(f"/proc/{root}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        k.syscall("setns", fd, k.CLONE_NEWNET)
    finally:
        os.close(fd)


# --- dump --------------------------------------------------------------------------------------

def dump(root: int, external: bool = False):
    """Read the tree's network namespace and join it: the dumper stays in it.  Returns the
    NetNs message, or None when the tree shares our namespace or the namespace is the
    caller's (external: engine/extns.py; only joined, for the sockets)."""
    if not own(root, "net"):
        return None
    if external:
        enter(root)
        return None
    from .proto import images_pb2 as pb
    with Rtnl() as host:          # stays in our namespace: the outside ends of devices are there
        enter(root)
        with Rtnl() as ipr:
            net = pb.NetNs()
            links = {}
            for link in ipr.get_links():
                net.links.append(netdev.dump(link, host, pb))
                links[link["index"]] = net.links[-1]
            for addr in ipr.get_addr():
                if addr["index"] in links and _carried_address(addr):
                    links[addr["index"]].addresses.append(_address(addr, links[addr["index"]].name, pb))
            for route in _routes(ipr):
                net.routes.append(_route(route, links, pb))
    names = _sysctl_names([link.name for link in net.links])
    for name in names:
        value = _read_sysctl(name)
        if value is not None:
            net.sysctls.add(name=name, value=value)
    net.nft_ruleset = _nft_ruleset()
    return net


def check(root: int, external: bool = False) -> list[str]:
    """For `dump --check-only`: every device of the tree's namespace we would refuse."""
    if external or not own(root, "net"):
        return []
    try:
        with visiting(root, "net"), Rtnl() as ipr:
            refusals = [*map(netdev.refusal, ipr.get_links()), *map(_route_refusal, _routes(ipr))]
    except OSError as e:
        raise UnsupportedError(f"cannot look inside the net namespace of process {root}: {e.strerror}") from None
    return [why for why in refusals if why]


def _flags(addr) -> int:
    return addr.get_attr("IFA_FLAGS") or addr["flags"]       # the header has only the low 8 bits


def _carried_address(addr) -> bool:
    flags = _flags(addr)
    # IPv6 addresses the kernel makes from router advertisements (or privacy ones) it makes again
    return addr["family"] != socket.AF_INET6 or (flags & IFA_F_PERMANENT and not flags & IFA_F_TEMPORARY)


def _address(addr, device: str, pb):
    address = addr.get_attr("IFA_ADDRESS")
    local = addr.get_attr("IFA_LOCAL")
    label = addr.get_attr("IFA_LABEL")
    return pb.NetAddress(family=addr["family"], address=address, prefixlen=addr["prefixlen"],
                         local=local if local and local != address else "", scope=addr["scope"],
                         flags=_flags(addr) & IFA_F_KEPT,
                         label=label if label and label != device else "",
                         broadcast=addr.get_attr("IFA_BROADCAST") or "")


def _routes(ipr):
    """Every route of every table, but those the kernel derives from addresses and links, or
    learns, and makes again."""
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in ipr.routes(family):
            if route["proto"] not in (RTPROT_KERNEL, RTPROT_RA) and not route["flags"] & RTM_F_CLONED:
                yield route


def _route_refusal(route) -> str | None:
    for attr, what in ROUTE_REFUSED.items():
        if route.get_attr(attr) is not None:
            return f"{what} to {route.get_attr('RTA_DST') or 'default'}/{route['dst_len']} is not supported"
    return None


def _route(route, links, pb):
    why = _route_refusal(route)
    if why:
        raise UnsupportedError(f"network namespace: {why}")
    oif = route.get_attr("RTA_OIF")
    return pb.NetRoute(family=route["family"], dst=route.get_attr("RTA_DST") or "", dst_len=route["dst_len"],
                       gateway=route.get_attr("RTA_GATEWAY") or "", dev=links[oif].name if oif in links else "",
                       table=route.get_attr("RTA_TABLE") or route["table"],
                       priority=route.get_attr("RTA_PRIORITY") or 0, scope=route["scope"], type=route["type"],
                       protocol=route["proto"], prefsrc=route.get_attr("RTA_PREFSRC") or "",
                       flags=route["flags"] & RTNH_F_ONLINK)


def _read_sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name}") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None        # IPv6 off, or a sysctl this kernel does not have


def _nft_ruleset() -> str:
    """The namespace's nftables ruleset as JSON, without our own lock table; empty if none."""
    import json, shutil, subprocess         # noqa: E401 -- only with nft at hand (~6 ms)
    if shutil.which("nft") is None or _no_tables():
        return ""
    r = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
    if r.returncode != 0:
        raise UnsupportedError(f"cannot read the network namespace's nftables ruleset: {r.stderr.strip()}")
    items = [item for item in json.loads(r.stdout).get("nftables", []) if not _ours(item)]
    return json.dumps({"nftables": items}) if items else ""


def _no_tables() -> bool:
    """Netlink says there is no table: running nft (a few ms) would say the same."""
    try:
        return nft_tables() == 0
    except OSError:
        return False            # no nf_tables here: let nft say what it says


def _ours(item: dict) -> bool:
    """Metadata, or part of the network lock's table."""
    from .netlock import NFT_TABLE
    kind, body = next(iter(item.items()))
    table = body.get("name") if kind == "table" else body.get("table")
    return kind == "metainfo" or (body.get("family"), table) == ("inet", NFT_TABLE)


# --- restore -----------------------------------------------------------------------------------

def validate(net, where: str) -> None:
    names = set()
    for link in net.links:
        netdev.validate(link, where)
        names.add(link.name)
        for a in link.addresses:
            _validate_address(a, link.name, where)
    for r in net.routes:
        if r.dev and r.dev not in names:
            raise ImageError(f"{where}: a route uses unknown device {r.dev!r}")
        for text in (r.dst, r.gateway, r.prefsrc):
            if text and not _is_address(r.family, text):
                raise ImageError(f"{where}: bad address {text!r} in a route")
        if r.family not in (socket.AF_INET, socket.AF_INET6) or r.dst_len > (32 if r.family == socket.AF_INET else 128) \
                or max(r.scope, r.type, r.protocol) > 255:
            raise ImageError(f"{where}: bad route to {r.dst}/{r.dst_len}")
    allowed = set(_sysctl_names(names))
    for s in net.sysctls:
        if s.name not in allowed or not SYSCTL_VALUE.match(s.value):
            raise ImageError(f"{where}: sysctl {s.name!r} = {s.value!r} cannot be restored")
    if net.nft_ruleset:
        import json
        try:
            json.loads(net.nft_ruleset)["nftables"]
        except (ValueError, KeyError, TypeError):
            raise ImageError(f"{where}: the nftables ruleset is not valid JSON") from None


def _validate_address(a, device: str, where: str) -> None:
    if a.family not in (socket.AF_INET, socket.AF_INET6) or a.prefixlen > (32 if a.family == socket.AF_INET else 128) \
            or a.scope > 255:
        raise ImageError(f"{where}: bad address family or prefix on {device}")
    for text in (a.address, a.local, a.broadcast):
        if text and not _is_address(a.family, text):
            raise ImageError(f"{where}: bad address {text!r} on {device}")
    if a.label and not netdev.IFNAME.match(a.label):
        raise ImageError(f"{where}: bad address label {a.label!r} on {device}")


def _is_address(family: int, text: str) -> bool:
    try:
        socket.inet_pton(family, text)
        return True
    except (OSError, ValueError):
        return False


def restore(inventory, devices, files) -> "netdev.HostDevices | None":
    """Make the tree's network namespace and enter it (see the module docstring); returns
    what undoes the host side on failure, or None when the tree shares ours."""
    if not inventory.HasField("net"):
        if devices:
            raise PlanError(f"--external {devices[0].kind}[{devices[0].name}]: the dump has no network "
                            f"namespace of its own")
        return None
    netdev.check_plan(inventory.net.links, devices)
    net = inventory.net
    external = {d.name: d for d in devices}
    host_ns_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    host = Rtnl()                   # stays in our namespace: host ends are made there
    k.syscall("unshare", k.CLONE_NEWNET)
    devs = netdev.HostDevices(host, host_ns_fd, os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC),
                              Rtnl())
    try:
        for link in net.links:
            devs.create(link, external.get(link.name))
        fault_point("netdev")
        for s in net.sysctls:
            _write_sysctl(s.name, s.value)
        _lock(net.nft_ruleset, _locked(files))
        _set_up(devs.inside, net)
    except BaseException as e:
        devs.undo()
        k.syscall("setns", host_ns_fd, k.CLONE_NEWNET)      # back where we came from
        devs.close()
        if isinstance(e, NetlinkError):
            raise RestoreError(f"cannot set up the network namespace: {e.strerror}") from None
        raise
    return devs


def _locked(files) -> list:
    """The TCP connections the dump locked (their kind module is loaded only if there are any)."""
    sockets = {i: e for i, e in files.items() if e.kind == "inetsk"}
    if not sockets:
        return []
    from .kinds import inetsk
    return inetsk.locked(sockets)


def _write_sysctl(name: str, value: str) -> None:
    try:
        with open(f"/proc/sys/{name}", "w") as f:
            f.write(value)
    except OSError as e:
        raise RestoreError(f"cannot set sysctl {name} to {value!r}: {e.strerror}") from None


def _lock(ruleset: str, locked: list) -> None:
    """The namespace's own ruleset, and the lock of the TCP connections the dump locked
    (inetsk.locked: (name, element) pairs)."""
    if ruleset:
        import subprocess
        r = subprocess.run(["nft", "-j", "-f", "-"], input=ruleset, capture_output=True, text=True)
        if r.returncode != 0:
            raise RestoreError(f"cannot restore the network namespace's nftables ruleset: {r.stderr.strip()}")
    if locked:
        from . import netlock
        for name, element in locked:
            netlock.lock(name, element)


def _set_up(ipr, net) -> None:
    index = {link.name: ipr.link_lookup(ifname=link.name)[0] for link in net.links}
    for link in net.links:
        if link.up:
            ipr.link("set", index=index[link.name], state="up")
    for link in net.links:
        for a in link.addresses:
            flags = a.flags | (IFA_F_NODAD if a.family == socket.AF_INET6 else 0)
            attrs = {"index": index[link.name], "family": a.family, "address": a.address,
                     "prefixlen": a.prefixlen, "scope": a.scope, "IFA_FLAGS": flags}
            attrs.update({key: getattr(a, key) for key in ("local", "label", "broadcast") if getattr(a, key)})
            try:
                ipr.addr("add", **attrs)
            except NetlinkError as e:
                if e.errno != errno.EEXIST:       # one the kernel made when the link went up
                    raise RestoreError(f"cannot add address {a.address}/{a.prefixlen} to {link.name}: "
                                       f"{e.strerror}") from None
    # routes through a gateway need the routes that reach it first
    for r in sorted(net.routes, key=lambda r: bool(r.gateway)):
        attrs = {"family": r.family, "dst_len": r.dst_len, "table": r.table, "scope": r.scope,
                 "type": r.type, "proto": r.protocol, "flags": r.flags}
        attrs.update({key: value for key, value in (("dst", r.dst), ("gateway", r.gateway), ("prefsrc", r.prefsrc),
                                                    ("priority", r.priority)) if value})
        if r.dev:
            attrs["oif"] = index[r.dev]
        try:
            ipr.route("add", **attrs)
        except NetlinkError as e:
            raise RestoreError(f"cannot add the route to {r.dst or 'default'}/{r.dst_len}"
                               f"{' via ' + r.gateway if r.gateway else ''}: {e.strerror}") from None
