"""veth devices: the container end inside the tree's network namespace, its peer outside.

Dump: the container end's own state (engine/netdev.py) plus, as hints, the
peer's ifindex, name and bridge as the dumper's namespace sees them.  Restore:
the pair is created with the container end straight in the new namespace
(IFLA_NET_NS_FD, with its name, MAC, MTU and ifindex) and the host end in ours,
named by `--external veth[IF]:HOST@BRIDGE` (or `--veth-pair IF=HOST[@BRIDGE]`),
attached to BRIDGE and set up.  Without an entry the host end takes the name the
peer had at dump time if that name is free (else the kernel names it vethN) and
joins the bridge the peer was on if it still exists.  A veth whose two ends are
both inside the namespace is refused.
"""
from __future__ import annotations

import logging

from .errors import RestoreError
from .netdev import host_link
from .netlink import NetlinkError

log = logging.getLogger("lxc_cr.netdev")


OTHER_END = "its peer"          # must be outside the namespace (engine/netdev.py refusal)


def dump(msg, link, host) -> None:
    msg.peer_ifindex = link.get_attr("IFLA_LINK") or 0
    peer = host_link(host, msg.peer_ifindex)
    if peer is None or peer.get_attr("IFLA_LINK") != link["index"]:
        return              # not the peer: that is in another namespace than the dumper's
    msg.peer_name = peer.get_attr("IFLA_IFNAME")
    master = peer.get_attr("IFLA_MASTER")
    if master:
        msg.peer_master = host.get_links(master)[0].get_attr("IFLA_IFNAME")


def create(devs, link, external) -> None:
    """The pair, the host end attached and up; its deletion goes to devs' undo steps."""
    host_name, bridge = _host_side(devs, link, external)
    bridge_index = devs.host_index(bridge, f"bridge {bridge} for veth {link.name}") if bridge else None
    peer = {"ifname": host_name} if host_name else {}
    try:
        devs.host.link("add", kind="veth", peer=peer, **devs.common(link))
    except NetlinkError as e:
        raise RestoreError(f"cannot create veth {link.name} with host end {host_name or '(kernel-named)'}: "
                           f"{e.strerror}") from None
    inner = devs.inside.link_lookup(ifname=link.name)[0]
    host_index = devs.inside.get_links(inner)[0].get_attr("IFLA_LINK")
    devs.undo_steps.append(lambda: devs.host.link("del", index=host_index))
    if bridge_index is not None:
        devs.host.link("set", index=host_index, master=bridge_index)
    devs.host.link("set", index=host_index, state="up")
    log.info("veth %s: host end %s%s", link.name, devs.host.get_links(host_index)[0].get_attr("IFLA_IFNAME"),
             f" on {bridge}" if bridge else "")


def _host_side(devs, link, external) -> tuple[str | None, str | None]:
    """(host end name, bridge): from --external, else from the dump's hints."""
    if external is not None:
        return external.host, external.bridge
    name = link.peer_name if link.peer_name and not devs.host.link_lookup(ifname=link.peer_name) else None
    bridge = link.peer_master if link.peer_master and devs.host.link_lookup(ifname=link.peer_master) else None
    if link.peer_master and bridge is None:
        log.warning("veth %s: bridge %s it was on is gone; its host end is left unattached",
                    link.name, link.peer_master)
    return name, bridge
