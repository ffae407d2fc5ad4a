"""Netlink for the engine: pyroute2's messages over plain, synchronous sockets.

pyroute2's own sockets (IPRoute, DiagSocket) run on its asyncio layer, and
importing that costs 70-100 ms on this project's machine: as long as a whole
container checkpoint should take.  The engine needs a handful of requests, each
answered before it goes on, so it takes from pyroute2 what is hard to get right
(the message layouts, their encoding and decoding) and does the rest here: make
the request, send it, read the answers until the dump ends or the kernel acks.
Importing the parts used costs ~10 ms.

    Rtnl()          rtnetlink in the network namespace the caller is in when it is made:
                    get_links, get_addr, routes, link_lookup, link/addr/route(command, ...)
                    (keywords as IPRoute's)
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
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
SOCK_DIAG_BY_FAMILY = 20
NFT_MSG_GETTABLE = (10 << 8) | 1            # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETTABLE
UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS, UDIAG_SHOW_RQLEN = 0x02, 0x04, 0x08, 0x10
IFF_UP = 0x1
RT_TABLE_COMPAT, RT_TABLE_MAIN = 252, 254
RTPROT_STATIC, RTN_UNICAST = 4, 1
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

    # Changes, as IPRoute's link/addr/route commands take them: header fields by name, other
    # keywords name attributes (mtu: IFLA_MTU, or the attribute's own name).  Translated here
    # for the few the engine uses; pyroute2's general translation (its request filters) costs
    # ~6 ms to import.

    def link(self, command: str, index: int = 0, state: str | None = None, kind: str | None = None,
             peer: dict | None = None, macvlan_mode: str | None = None, **attrs) -> None:
        """Add, set or delete a device: kind (with peer, a veth's other end's attributes, or
        macvlan_mode) for a new one; state "up" or "down"; attributes (ifname, mtu, address,
        txqlen, net_ns_fd, master, link...)."""
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        msg = ifinfmsg()
        msg.update(family=0, ifi_type=0, index=index, flags=0, change=0)
        if state is not None:
            msg.update(flags=IFF_UP if state == "up" else 0, change=IFF_UP)
        if kind is not None:
            data = {"veth": [["VETH_INFO_PEER", {"attrs": _attrs("IFLA_", peer or {})}]],
                    "macvlan": [["IFLA_MACVLAN_MODE", macvlan_mode]]}.get(kind)
            info = [["IFLA_INFO_KIND", kind]] + ([["IFLA_INFO_DATA", {"attrs": data}]] if data else [])
            msg["attrs"].append(["IFLA_LINKINFO", {"attrs": info}])
        msg["attrs"] += _attrs("IFLA_", attrs)
        self.request(msg, *COMMANDS["link"][command], ifinfmsg)

    def addr(self, command: str, index: int, family: int, prefixlen: int, scope: int = 0, **attrs) -> None:
        """Add an address (address, local, label, broadcast, IFA_FLAGS)."""
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        msg = ifaddrmsg()
        msg.update(index=index, family=family, prefixlen=prefixlen, scope=scope, flags=0)
        if family == socket.AF_INET:
            attrs.setdefault("local", attrs["address"])        # as ip(8) and IPRoute do
        msg["attrs"] = _attrs("IFA_", attrs)
        self.request(msg, *COMMANDS["addr"][command], ifaddrmsg)

    def route(self, command: str, family: int, dst_len: int = 0, table: int = RT_TABLE_MAIN, scope: int = 0,
              type: int = 0, proto: int = 0, flags: int = 0, **attrs) -> None:
        """Add a route (dst, gateway, prefsrc, priority, oif); type and proto default to unicast
        and static, as with IPRoute."""
        from pyroute2.netlink.rtnl.rtmsg import rtmsg
        msg = rtmsg()
        msg.update(family=family, dst_len=dst_len, src_len=0, tos=0, table=table if table < 256 else RT_TABLE_COMPAT,
                   proto=proto or RTPROT_STATIC, scope=scope, type=type or RTN_UNICAST, flags=flags)
        msg["attrs"] = _attrs("RTA_", {**attrs, "table": table})
        self.request(msg, *COMMANDS["route"][command], rtmsg)


def _attrs(prefix: str, named: dict) -> list:
    """[[NLA name, value]] of keywords: mtu is IFLA_MTU (with prefix IFLA_); a name in capitals is
    the attribute's own."""
    return [[key if key.isupper() else prefix + key.upper(), value] for key, value in named.items()
            if value is not None]


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
