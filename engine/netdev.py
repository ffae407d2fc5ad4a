"""Network devices of a tree's own network namespace: what each is, and who makes it again.

A device is dumped as a NetLink (name, ifindex, MAC, MTU, txqlen, flags, state)
plus what its kind adds; the kind modules own the rest:

    loopback   every namespace has one: only its MTU and state are set again
    veth       engine/netdev_veth.py: a pair, the container end inside, the host end outside
    macvlan    engine/netdev_macvlan.py: sits on a device outside
    device     a physical device (no netlink kind): restore needs it back from the host,
               `--external netdev[IF]:ORIG` moves host device ORIG in as IF

`--external netdev[IF]:ORIG` also works for a dumped device of any kind: the
host device is moved in instead of a new one being made.  Any other kind is
refused by name, at dump and in `dump --check-only`.

At restore, every device is made inside the new namespace before anything else
in it, with its dumped name, MAC, MTU and (when free) ifindex.  Everything made
or moved on the host side is recorded in a HostDevices, whose undo() deletes it
(or moves it back) when the restore fails.
"""
from __future__ import annotations

import logging
import os
import re

from .errors import ImageError, PlanError, RestoreError, UnsupportedError
from .netlink import NetlinkError

log = logging.getLogger("lxc_cr.netdev")

IFF_UP, IFF_LOOPBACK = 0x1, 0x8
IFNAME = re.compile(r"^[A-Za-z0-9_.@+-]{1,15}$")        # what the kernel takes, within reason
MAX_MTU = 1 << 20


def _kind_modules():
    from . import netdev_macvlan, netdev_veth
    return {"veth": netdev_veth, "macvlan": netdev_macvlan}


def kind_of(link) -> str:
    """The kind of a link message (pyroute2's ifinfmsg): loopback, device, or its netlink kind."""
    if link["flags"] & IFF_LOOPBACK:
        return "loopback"
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return kind or "device"


def refusal(link) -> str | None:
    """Why a device cannot be dumped, or None."""
    kind = kind_of(link)
    if kind in ("loopback", "device"):
        return None
    module = _kind_modules().get(kind)
    name = link.get_attr("IFLA_IFNAME")
    if module is None:
        return (f"network device {name} is of kind {kind}, which is not supported "
                f"(supported: loopback, veth, macvlan, physical devices)")
    if link.get_attr("IFLA_LINK_NETNSID") is None:       # the other end is in the same namespace
        return (f"{kind} device {name} has {module.OTHER_END} inside the same network namespace, which is "
                f"not supported (it must be outside)")
    return None


def dump(link, host, pb):
    """A NetLink for this device; host is an Rtnl (engine/netlink.py) in the dumper's own namespace."""
    why = refusal(link)
    if why:
        raise UnsupportedError(why)
    kind = kind_of(link)
    mac = link.get_attr("IFLA_ADDRESS") or ""
    msg = pb.NetLink(name=link.get_attr("IFLA_IFNAME"), kind=kind, ifindex=link["index"],
                     mac=bytes.fromhex(mac.replace(":", "")), mtu=link.get_attr("IFLA_MTU"),
                     txqlen=link.get_attr("IFLA_TXQLEN") or 0, flags=link["flags"],
                     up=bool(link["flags"] & IFF_UP))
    module = _kind_modules().get(kind)
    if module:
        module.dump(msg, link, host)
    return msg


def validate(link, where: str) -> None:
    if not IFNAME.match(link.name) or link.name in (".", ".."):
        raise ImageError(f"{where}: bad network device name {link.name!r}")
    if not 68 <= link.mtu <= MAX_MTU and link.kind != "loopback":
        raise ImageError(f"{where}: network device {link.name} has a bad MTU {link.mtu}")
    if link.kind not in ("loopback", "device") and link.kind not in _kind_modules():
        raise ImageError(f"{where}: network device {link.name} has unknown kind {link.kind!r}")
    if link.mac and len(link.mac) != 6:
        raise ImageError(f"{where}: network device {link.name} has a bad MAC address")
    validate_kind = getattr(_kind_modules().get(link.kind), "validate", None)
    if validate_kind:
        validate_kind(link, where)
    for hint in (link.peer_name, link.peer_master, link.lower_name):
        if hint and not IFNAME.match(hint):
            raise ImageError(f"{where}: network device {link.name} names a bad host device {hint!r}")


def check_plan(links, devices) -> None:
    """Every --external device entry names a dumped device of its kind; every physical
    device has an entry."""
    by_name = {link.name: link for link in links}
    for dev in devices:
        link = by_name.get(dev.name)
        if link is None or (dev.kind != "netdev" and link.kind != dev.kind):
            raise PlanError(f"--external {dev.kind}[{dev.name}]: the dump has no {dev.kind} device {dev.name} "
                            f"(it has: {', '.join(f'{n} ({l.kind})' for n, l in by_name.items())})")
    given = {dev.name for dev in devices if dev.kind == "netdev"}
    for link in links:
        if link.kind == "device" and link.name not in given:
            raise PlanError(f"network device {link.name} was a physical device: restore it with "
                            f"--external netdev[{link.name}]:HOSTDEVICE")


def host_link(host, index: int):
    """The link message of device index in the dumper's namespace, or None (the device outside
    is in yet another namespace)."""
    try:
        return host.get_links(index)[0] if index else None
    except NetlinkError:
        return None


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


class HostDevices:
    """Creates the namespace's devices; remembers what it did on the host side, to undo it.

    host: an Rtnl (engine/netlink.py) in the host namespace; ns_fd: the new namespace;
    inside: an Rtnl in the new namespace."""

    def __init__(self, host, host_ns_fd: int, ns_fd: int, inside):
        self.host = host
        self.host_ns_fd = host_ns_fd
        self.ns_fd = ns_fd
        self.inside = inside
        self.undo_steps = []

    def create(self, link, external) -> None:
        try:
            if external is not None and external.kind == "netdev":
                self._move_in(link, external.host)
            elif link.kind == "loopback":
                index = self.inside.link_lookup(ifname=link.name)[0]
                self.inside.link("set", index=index, mtu=link.mtu)
            else:
                _kind_modules()[link.kind].create(self, link, external)
        except NetlinkError as e:
            raise RestoreError(f"cannot create network device {link.name} ({link.kind}): "
                               f"{e.strerror}") from None

    def common(self, link) -> dict:
        """Creation attributes of the container end: in the new namespace, its name,
        MAC, MTU and, if no device there has it yet, its ifindex."""
        attrs = {"ifname": link.name, "net_ns_fd": self.ns_fd, "mtu": link.mtu}
        if link.mac:
            attrs["address"] = mac_text(link.mac)
        if link.txqlen:
            attrs["txqlen"] = link.txqlen
        if link.ifindex and not self._index_taken(link.ifindex):
            attrs["index"] = link.ifindex
        return attrs

    def _index_taken(self, index: int) -> bool:
        return any(l["index"] == index for l in self.inside.get_links())

    def host_index(self, name: str, what: str) -> int:
        """The index of host device name; what describes it for the error if it does not exist."""
        found = self.host.link_lookup(ifname=name)
        if not found:
            raise RestoreError(f"{what} does not exist on the host")
        return found[0]

    def _move_in(self, link, orig: str) -> None:
        """Host device orig, moved in as the dumped device: its name, ifindex (when free), MTU and MAC."""
        index = self.host_index(orig, f"host device {orig} (--external netdev[{link.name}]:{orig})")
        before = self.host.get_links(index)[0]
        moved = {"net_ns_fd": self.ns_fd}
        if link.ifindex and not self._index_taken(link.ifindex):
            moved["IFLA_NEW_IFINDEX"] = link.ifindex
        self.host.link("set", index=index, **moved)
        self.undo_steps.append(lambda: self._move_back(link.name, orig, before))
        inner = self.inside.link_lookup(ifname=orig)[0]
        attrs = {"ifname": link.name, "mtu": link.mtu}
        if link.mac:
            attrs["address"] = mac_text(link.mac)
        self.inside.link("set", index=inner, **attrs)
        log.info("moved host device %s in as %s", orig, link.name)

    def _move_back(self, name: str, orig: str, before) -> None:
        """Back out, as it was: down, with its own name, MTU and MAC."""
        found = self.inside.link_lookup(ifname=name) or self.inside.link_lookup(ifname=orig)
        if found:
            self.inside.link("set", index=found[0], state="down")
            self.inside.link("set", index=found[0], net_ns_fd=self.host_ns_fd, ifname=orig,
                             mtu=before.get_attr("IFLA_MTU"), address=before.get_attr("IFLA_ADDRESS"))
            if before["flags"] & IFF_UP:
                self.host.link("set", index=self.host_index(orig, f"moved-back device {orig}"), state="up")

    def close(self) -> None:
        self.host.close()
        self.inside.close()
        os.close(self.host_ns_fd)
        os.close(self.ns_fd)

    def undo(self) -> None:
        """Delete what was made on the host side, move back what was moved in; last first."""
        while self.undo_steps:
            step = self.undo_steps.pop()
            try:
                step()
            except Exception as e:         # go on: every other device must go too
                log.warning("undoing a network device: %s", e)
