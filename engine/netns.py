"""A tree's own network namespace.

Dump: the dumper joins the tree's network namespace for the whole dump, so
that everything it asks about sockets (sock_diag, getsockopt on pidfd_getfd'ed
sockets) is answered there, and records its devices.  Restore: the restorer
creates a new network namespace for itself before it opens any file, sets the
devices up, and the tree is forked inside it.  Only the loopback device is
supported so far; any other device is refused by name.  pyroute2 does the
netlink work; it is imported only when a tree has a network namespace.
"""
from __future__ import annotations

import ipaddress
import os

from . import kernel as k
from .errors import ImageError, RestoreError, UnsupportedError
from .namespaces import own

IFF_UP = 1
RT_SCOPE_HOST = 254
# what the kernel gives a loopback device when it is set up
DEFAULT_LO = {"127.0.0.1/8", "::1/128"}


def enter(root: int) -> bool:
    """Join root's network namespace if it has its own; returns whether it has."""
    if not own(root, "net"):
        return False
    fd = os.open(f"/proc/{root}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        k.syscall("setns", fd, k.CLONE_NEWNET)
    finally:
        os.close(fd)
    return True


def dump(pid: int, pb):
    """Our current namespace's devices (call after enter())."""
    from pyroute2 import IPRoute
    net = pb.NetNs()
    with IPRoute() as ipr:
        names = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name != "lo":
                raise UnsupportedError(f"process {pid}'s network namespace has device {name}; "
                                       f"only the loopback device is supported yet")
            names[link["index"]] = net.links.add(name=name, up=bool(link["flags"] & IFF_UP),
                                                 mtu=link.get_attr("IFLA_MTU"))
        for addr in ipr.get_addr():
            text = f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}"
            if text not in DEFAULT_LO:
                names[addr["index"]].addresses.append(text)
    return net


def validate(net, where: str) -> None:
    for link in net.links:
        if link.name != "lo" or not 68 <= link.mtu <= 1 << 20:
            raise ImageError(f"{where}: network device {link.name!r} (mtu {link.mtu}) cannot be restored")
        for text in link.addresses:
            try:
                ipaddress.ip_interface(text)
            except ValueError:
                raise ImageError(f"{where}: bad address {text!r} on {link.name}") from None


def create(net) -> None:
    """Give the restorer a new network namespace with the dumped devices set up."""
    k.syscall("unshare", k.CLONE_NEWNET)
    from pyroute2 import IPRoute, NetlinkError
    try:
        _set_up(IPRoute, net)
    except NetlinkError as e:
        raise RestoreError(f"cannot set up the network namespace: {e}") from None


def _set_up(IPRoute, net) -> None:
    with IPRoute() as ipr:
        for link in net.links:
            index = ipr.link_lookup(ifname=link.name)[0]
            ipr.link("set", index=index, mtu=link.mtu)
            if link.up:
                ipr.link("set", index=index, state="up")
            for text in link.addresses:
                address, prefix = text.split("/")
                # as `ip` does: the kernel takes loopback addresses only with host scope
                scope = RT_SCOPE_HOST if ipaddress.ip_address(address).is_loopback else 0
                ipr.addr("add", index=index, address=address, prefixlen=int(prefix), scope=scope)
