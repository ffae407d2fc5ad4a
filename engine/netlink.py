"""Netlink for the engine: pyroute2's messages over plain, synchronous sockets.

pyroute2's own sockets (IPRoute, DiagSocket) run on its asyncio layer, and
importing that costs 70-100 ms on this project's machine: as long as a whole
container checkpoint should take.  The engine needs a handful of requests, each
answered before it goes on, so it takes from pyroute2 what is hard to get right
(the message layouts, their encoding and decoding, and IPRoute's translation of
keyword arguments into messages: its request filters) and does the rest here:
send one request, read the answers until the dump ends or the kernel acks.
Importing the parts used costs ~10 ms.

    Rtnl()          rtnetlink in the network namespace the caller is in when it is made:
                    get_links, get_addr, routes, link_lookup, link/addr/route(command, **kw)
                    (the keywords are IPRoute's)
    unix_diag()     sock_diag of every unix socket of the caller's namespace
    inet_diag(...)  sock_diag of TCP sockets by state
    nft_tables()    how many nftables tables the caller's namespace has

A request the kernel refuses raises NetlinkError, an OSError with its errno.
"""
from __future__ import annotations

import errno
import functools
import os
import socket
import struct

from .errors import fault_point

NETLINK_ROUTE, NETLINK_SOCK_DIAG, NETLINK_NETFILTER = 0, 4, 12
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
SOCK_DIAG_BY_FAMILY = 20
NFT_MSG_GETTABLE = (10 << 8) | 1            # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS, UDIAG_SHOW_RQLEN = 0x02, 0x04, 0x08, 0x10
NLMSGHDR = struct.Struct("=IHHII")          # length, type, flags, sequence, port
RECV_SIZE = 1 << 16

# what IPRoute's link/addr/route commands send: (message type, flags)
COMMANDS = {
    "link": {"add": (RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL), "set": (RTM_NEWLINK, 0), "del": (RTM_DELLINK, 0)},
    "addr": {"add": (RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)},
    "route": {"add": (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)},
}


class NetlinkError(OSError):
    """The kernel refused a netlink request."""

    def __init__(self, code: int):
        super().__init__(code, os.strerror(code))


def _pyroute2():
    """Make `import pyroute2.x` load only pyroute2.x.

    pyroute2's package __init__ imports everything it has (NDB, IPDB, asyncio...);
    the engine imports the submodules it needs by their paths.  The package
    module is made without running its __init__; `from pyroute2 import config` still
    finds the submodule, and whoever asks it for a name of its own
    (`from pyroute2 import IPRoute`) gets the __init__ run then."""
    import importlib
    import importlib.util
    import sys
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    package = importlib.util.module_from_spec(spec)

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, name)
    package.__getattr__ = __getattr__
    sys.modules["pyroute2"] = package


class _Socket:
    """One netlink socket: request() sends a message and returns the kernel's answers."""

    def __init__(self, protocol: int):
        _pyroute2()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, msg, msg_type: int, flags: int, answer) -> list:
        """Send msg; return its answers (messages of class answer), until NLMSG_DONE for a
        dump, the ack otherwise.  The kernel's refusal raises NetlinkError."""
        fault_point("netlink")
        self.seq += 1
        # NLM_F_DUMP's bits mean other things in a request that changes something: check it whole
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        msg["header"] = {"type": msg_type, "flags": NLM_F_REQUEST | flags | (0 if dump else NLM_F_ACK),
                         "sequence_number": self.seq, "pid": 0}
        msg.encode()
        self.sock.send(msg.data)
        answers = []
        while True:
            data = self.sock.recv(RECV_SIZE)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size:
                    raise OSError(f"netlink: a malformed answer (length {length})")
                if seq == self.seq:
                    if kind in (NLMSG_ERROR, NLMSG_DONE):
                        # an ack is an error 0; a dump's end carries its error too
                        error = struct.unpack_from("=i", data, offset + NLMSGHDR.size)[0] \
                            if length >= NLMSGHDR.size + 4 else 0
                        if error:
                            raise NetlinkError(-error)
                        return answers
                    m = answer(data[offset:offset + length])
                    m.decode()
                    answers.append(m)
                offset += (length + 3) & ~3


class Rtnl(_Socket):
    """rtnetlink in the network namespace the caller was in when it made this."""

    def __init__(self):
        super().__init__(NETLINK_ROUTE)

    def get_links(self, *indices) -> list:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        if not indices:
            return self.request(ifinfmsg(), RTM_GETLINK, NLM_F_DUMP, ifinfmsg)
        found = []
        for index in indices:
            msg = ifinfmsg()
            msg["index"] = index
            found += self.request(msg, RTM_GETLINK, 0, ifinfmsg)
        return found

    def link_lookup(self, ifname: str) -> list[int]:
        """[index] of the device of that name, or []."""
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        msg = ifinfmsg()
        msg["attrs"].append(["IFLA_IFNAME", ifname])
        try:
            return [m["index"] for m in self.request(msg, RTM_GETLINK, 0, ifinfmsg)]
        except NetlinkError as e:
            if e.errno == errno.ENODEV:
                return []
            raise

    def get_addr(self) -> list:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        return self.request(ifaddrmsg(), RTM_GETADDR, NLM_F_DUMP, ifaddrmsg)

    def routes(self, family: int) -> list:
        """Every route of every table of that family."""
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
        msg = rtmsg()
        msg["family"] = family
        return self.request(msg, RTM_GETROUTE, NLM_F_DUMP, rtmsg)

    def link(self, command: str, **kw) -> None:
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.requests.link import LinkFieldFilter, LinkIPRouteFilter
        self._change("link", command, ifinfmsg, kw, LinkFieldFilter(), LinkIPRouteFilter(command))

    def addr(self, command: str, **kw) -> None:
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.requests.address import AddressFieldFilter, AddressIPRouteFilter
        self._change("addr", command, ifaddrmsg, kw, AddressFieldFilter(), AddressIPRouteFilter(command))

    def route(self, command: str, **kw) -> None:
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
        from pyroute2.requests.route import RouteFieldFilter, RouteIPRouteFilter
        kw.update(proto=kw.get("proto") or "static", type=kw.get("type") or "unicast")    # as IPRoute does
        self._change("route", command, rtmsg, kw, RouteFieldFilter(add_defaults=True), RouteIPRouteFilter(command))

    def _change(self, kind: str, command: str, cls, kw: dict, *filters) -> None:
        """A message of class cls made from IPRoute's keywords by its request filters, sent."""
        from pyroute2.requests.main import RequestProcessor
        request = RequestProcessor(context=kw, prime=kw, parameters={"strict_check": False})   # IPRoute's default
        for f in filters:
            request.add_filter(f)
        request.finalize()
        msg = cls()
        for name, *_ in msg.fields:
            msg[name] = request.get_value(name, default=0, mode="field")
        for key, value in request.items():
            nla = cls.name2nla(key)
            if value is not None and msg.valid_nla(nla):
                msg["attrs"].append([nla, value])
        msg["attrs"].extend(request.get("attrs", ()))
        msg_type, flags = COMMANDS[kind][command]
        self.request(msg, msg_type, flags, cls)


# --- sock_diag ---------------------------------------------------------------------------------
# The request and answer layouts (linux/unix_diag.h, linux/inet_diag.h), as pyroute2 messages:
# pyroute2 declares its own beside its asyncio DiagSocket, whose import is what we avoid.

@functools.cache
def _diag_messages():
    from pyroute2.netlink import nla, nlmsg

    class unix_diag_req(nlmsg):
        fields = (("sdiag_family", "B"), ("sdiag_protocol", "B"), ("pad", "H"), ("udiag_states", "I"),
                  ("udiag_ino", "I"), ("udiag_show", "I"), ("udiag_cookie", "Q"))

    class unix_diag_msg(nlmsg):
        fields = (("udiag_family", "B"), ("udiag_type", "B"), ("udiag_state", "B"), ("pad", "B"),
                  ("udiag_ino", "I"), ("udiag_cookie", "Q"))
        nla_map = (("UNIX_DIAG_NAME", "asciiz"), ("UNIX_DIAG_VFS", "vfs"), ("UNIX_DIAG_PEER", "uint32"),
                   ("UNIX_DIAG_ICONS", "hex"), ("UNIX_DIAG_RQLEN", "rqlen"), ("UNIX_DIAG_MEMINFO", "hex"),
                   ("UNIX_DIAG_SHUTDOWN", "uint8"))

        class vfs(nla):
            fields = (("udiag_vfs_ino", "I"), ("udiag_vfs_dev", "I"))

        class rqlen(nla):
            fields = (("udiag_rqueue", "I"), ("udiag_wqueue", "I"))

    class inet_diag_req_v2(nlmsg):
        fields = (("sdiag_family", "B"), ("sdiag_protocol", "B"), ("idiag_ext", "B"), ("pad", "B"),
                  ("idiag_states", "I"), ("idiag_sport", ">H"), ("idiag_dport", ">H"), ("idiag_src", "16s"),
                  ("idiag_dst", "16s"), ("idiag_if", "I"), ("idiag_cookie", "Q"))

    class inet_diag_msg(nlmsg):
        fields = (("idiag_family", "B"), ("idiag_state", "B"), ("idiag_timer", "B"), ("idiag_retrans", "B"),
                  ("idiag_sport", ">H"), ("idiag_dport", ">H"), ("idiag_src", "16s"), ("idiag_dst", "16s"),
                  ("idiag_if", "I"), ("idiag_cookie", "Q"), ("idiag_expires", "I"), ("idiag_rqueue", "I"),
                  ("idiag_wqueue", "I"), ("idiag_uid", "I"), ("idiag_inode", "I"))

    return unix_diag_req, unix_diag_msg, inet_diag_req_v2, inet_diag_msg


def unix_diag() -> list:
    """sock_diag of every unix socket of the caller's network namespace: peer, icons, queue
    lengths, socket file, shutdown state."""
    unix_diag_req, unix_diag_msg, _, _ = _diag_messages()
    req = unix_diag_req()
    req.update(sdiag_family=socket.AF_UNIX, udiag_states=0xFFFFFFFF,
               udiag_show=UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN)
    with _Socket(NETLINK_SOCK_DIAG) as s:
        return s.request(req, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, unix_diag_msg)


def inet_diag(family: int, protocol: int, states: int) -> list:
    """sock_diag of the family's sockets of that protocol in the states (a bit mask)."""
    _, _, inet_diag_req_v2, inet_diag_msg = _diag_messages()
    req = inet_diag_req_v2()
    req.update(sdiag_family=family, sdiag_protocol=protocol, idiag_states=states,
               idiag_src=bytes(16), idiag_dst=bytes(16))
    with _Socket(NETLINK_SOCK_DIAG) as s:
        return s.request(req, SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, inet_diag_msg)


# --- nftables ------------------------------------------------------------------------------------

def nft_tables() -> int:
    """How many nftables tables the caller's network namespace has (of every family)."""
    from pyroute2.netlink import nlmsg

    class nfgenmsg(nlmsg):
        fields = (("nfgen_family", "B"), ("version", "B"), ("res_id", ">H"))
    with _Socket(NETLINK_NETFILTER) as s:
        return len(s.request(nfgenmsg(), NFT_MSG_GETTABLE, NLM_F_DUMP, nfgenmsg))
