"""Network namespaces with real devices: a tree whose eth0 is a veth on a host bridge.

The tree is `unshare -pf --net --uts 120_netdev`; the test puts the inner end of
a veth pair into its namespace, the outer end on the bridge br-net0 (made here,
with addresses), and configures eth0 from outside (MAC, MTU, addresses, routes,
sysctls, an nftables table).  The program checks all of it from inside before
the dump and after the restore; the host connects to its listener over the
bridge, and an established connection from the host to the program, dumped
with --tcp-established, carries on.  Names carry the branch name `net` so that
parallel runs on the machine do not collide.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import LXC_CR, NO_CR
from test_kinds_sockets import pattern
from helpers import unshared, wait_for

BRIDGE = "br-net0"
HOST_END = "vnet0h"           # the host end the test makes
RESTORED_END = "vnet0r"       # the host end restore makes
MOVED, MOVED_PEER = "vnet0m", "vnet0p"   # a host device moved in with --external netdev[...]
LOWER, LOWER_PEER = "vnet0l", "vnet0b"   # the host device a macvlan sits on, and its peer on the bridge
PORT = 7120
ADDRESS = "10.120.0.2"
H_LEN = 20000
INSIDE = f"""
ip link set lo up
ip link set eth0 address 02:00:00:01:20:02 mtu 1400
ip link set eth0 up
ip addr add {ADDRESS}/24 dev eth0
ip addr add fd42:120::2/64 dev eth0 nodad
ip route add 10.122.0.0/16 via 10.120.0.1
ip -6 route add default via fd42:120::1 dev eth0
sysctl -q -w net.ipv4.ip_local_port_range='20120 30120' net.ipv4.conf.eth0.arp_ignore=2
nft add table inet net120
nft add chain inet net120 input '{{ type filter hook input priority 0; policy accept; }}'
nft add rule inet net120 input tcp dport {PORT} counter
"""

pytestmark = pytest.mark.skipif(NO_CR, reason="needs lxc-cr")


def sh(*argv, check=True, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=check, **kw)


def link_exists(name: str) -> bool:
    return sh("ip", "link", "show", name, check=False).returncode == 0


def reap(pid) -> None:
    """A restored root is our child (we are a subreaper): reap it if it was killed."""
    with contextlib.suppress(ChildProcessError, TypeError):
        os.waitpid(pid, os.WNOHANG)


def wait_gone(name: str, timeout=10) -> None:
    """A dumped namespace goes away asynchronously, and its veth with it."""
    end = time.monotonic() + timeout
    while link_exists(name):
        assert time.monotonic() < end, f"{name} is still there"
        time.sleep(0.02)


def log_value(log, prefix: str) -> int:
    for line in log.read_text().splitlines():
        if line.startswith(f"# {prefix} "):
            return int(line.split()[-1])
    raise AssertionError(f"no '# {prefix}' in {log.read_text()!r}")


def image_digest(images) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(images.iterdir())
            if p.suffix == ".img"}


@pytest.fixture(scope="module")
def bridge():
    sh("ip", "link", "del", BRIDGE, check=False)
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", "10.120.0.1/24", "dev", BRIDGE)
    sh("ip", "addr", "add", "fd42:120::1/64", "dev", BRIDGE, "nodad")
    sh("ip", "addr", "add", "10.121.0.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    yield BRIDGE
    for name in (HOST_END, RESTORED_END, MOVED, LOWER, BRIDGE):
        sh("ip", "link", "del", name, check=False)


class Tree:
    """120_netdev as PID 1 of its namespaces, its eth0 on the bridge, a connection from the host."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.log = tmp_path / "prog.log"
        self.images = tmp_path / "images"
        self.running = contextlib.ExitStack()
        self.conn = None

    def start(self):
        self.unshare, self.root, _ = self.running.enter_context(
            unshared(self.tmp, "120_netdev", ("--net", "--uts"), ready="waiting"))
        sh("ip", "link", "add", HOST_END, "type", "veth", "peer", "name", "eth0", "netns", self.root)
        sh("ip", "link", "set", HOST_END, "master", BRIDGE, "up")
        sh("nsenter", "-t", self.root, "-n", "sh", "-ec", INSIDE)
        (self.tmp / "configured").touch()
        wait_for(self.log, "listening")
        self.conn = socket.create_connection((ADDRESS, PORT), timeout=10)
        self.conn.sendall(pattern(0x120A, H_LEN))
        wait_for(self.log, "READY")
        self.sent = log_value(self.log, "sent")
        return self

    def lxc_cr(self, verb, *argv, env=None):
        return sh(LXC_CR, verb, *argv, "-v4", check=False, env=env)

    def dump(self, *opts, env=None):
        return self.lxc_cr("dump", "-t", self.root, "-D", self.images, "-o", "dump.log", "--tcp-established",
                           *opts, env=env)

    def restore(self, *opts, env=None):
        return self.lxc_cr("restore", "-D", self.images, "-d", "--pidfile", self.tmp / "pid", "-o", "restore.log",
                           "--tcp-established", *opts, env=env)

    def dumped(self):
        r = self.dump()
        assert r.returncode == 0, r.stderr + (self.images / "dump.log").read_text()
        self.unshare.wait(timeout=10)
        wait_gone(HOST_END)

    def finish(self, restored: bool):
        """Signal the program; the host checks both byte streams and the listener, the program the rest."""
        result = {}

        def read_all():
            self.conn.settimeout(30)
            data = bytearray()
            while len(data) < self.sent + 4:
                chunk = self.conn.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            result["data"] = bytes(data)
            self.conn.sendall(b"OK")

        reader = threading.Thread(target=read_all)
        reader.start()
        with socket.create_connection((ADDRESS, PORT), timeout=10) as fresh:
            fresh.sendall(b"ping")
            os.kill(self.root, signal.SIGUSR1)
            fresh.settimeout(30)
            answer = fresh.recv(4)
        reader.join(30)
        if restored:
            _, status = os.waitpid(self.root, 0)
        else:
            status = self.unshare.wait(timeout=30) << 8
        text = self.log.read_text()
        assert os.waitstatus_to_exitcode(status) == 0 and "PASS" in text and "FAIL" not in text, text
        assert answer == b"pong"
        data = result.get("data", b"")
        assert len(data) == self.sent + 4, f"the host read {len(data)} bytes, expected {self.sent + 4}"
        assert data[:self.sent] == pattern(0x120B, self.sent), "the program's bytes came with a difference"
        assert data[self.sent:] == b"DONE"

    def close(self):
        if self.conn:
            self.conn.close()
        self.running.close()
        reap(self.root)


@pytest.fixture
def tree(bridge, tmp_path):
    t = Tree(tmp_path)
    try:
        yield t.start()
    finally:
        t.close()
        for name in (HOST_END, RESTORED_END, MOVED):
            sh("ip", "link", "del", name, check=False)


def test_veth_tree_round_trip(tree):
    """Devices, addresses, routes, sysctls and the ruleset come back; the host reaches the listener
    over the bridge; the established connection sees only a pause."""
    tree.dumped()
    r = tree.restore("--external", f"veth[eth0]:{RESTORED_END}@{BRIDGE}")
    assert r.returncode == 0, r.stderr + (tree.images / "restore.log").read_text()
    assert int((tree.tmp / "pid").read_text()) == tree.root
    master = sh("ip", "-o", "link", "show", RESTORED_END).stdout
    assert f"master {BRIDGE}" in master and "state UP" in master, master
    ruleset = sh("nsenter", "-t", tree.root, "-n", "nft", "list", "ruleset").stdout
    assert "table inet net120" in ruleset and f"tcp dport {PORT} counter" in ruleset, ruleset
    assert "lxc_cr" not in ruleset, "the network lock is still there after the restore"
    tree.finish(restored=True)


def test_missing_bridge_fails_and_leaves_no_veth(tree):
    """A bridge that does not exist: one clear line; no veth on the host, no task; the images
    are unchanged, and a restore with the older --veth-pair spelling then works."""
    tree.dumped()
    before = image_digest(tree.images)
    r = tree.restore("--external", f"veth[eth0]:{RESTORED_END}@br-net0-none")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "br-net0-none" in r.stderr and "does not exist" in r.stderr, r.stderr
    assert not link_exists(RESTORED_END)
    assert not os.path.exists(f"/proc/{tree.root}")
    r = tree.restore("--external", f"veth[eth9]:{RESTORED_END}@{BRIDGE}")
    assert r.returncode == 1 and "the dump has no veth device eth9 (it has: lo (loopback), eth0 (veth))" in r.stderr, \
        r.stderr
    assert image_digest(tree.images) == before
    r = tree.restore("--veth-pair", f"eth0={RESTORED_END}@{BRIDGE}")
    assert r.returncode == 0, r.stderr + (tree.images / "restore.log").read_text()
    tree.finish(restored=True)


@pytest.mark.parametrize("step", ["netdev", "registers"])
def test_fault_after_veth_leaves_none(tree, step):
    """A failure once the veth exists (right after it was made, or once the tasks are built):
    the host end is gone and no task is left."""
    tree.dumped()
    env = dict(os.environ, LXC_CR_FAULT=step)
    r = tree.restore("--external", f"veth[eth0]:{RESTORED_END}@{BRIDGE}", env=env)
    assert r.returncode == 1 and "injected fault" in r.stderr, r.stderr
    assert not link_exists(RESTORED_END)
    assert not os.path.exists(f"/proc/{tree.root}")


def test_netlink_failure_fails_cleanly(tree):
    """A netlink request failing (the first one, reading the tree's namespace): the dump
    fails in one line and the tree runs on, its connection working; then the restore fails
    the same way, leaving no veth and no task, and the unchanged images restore."""
    env = dict(os.environ, LXC_CR_FAULT="netlink")
    r = tree.dump(env=env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "'netlink'" in r.stderr, r.stderr
    assert not (tree.images / "inventory.img").exists()
    tree.dumped()
    before = image_digest(tree.images)
    r = tree.restore("--external", f"veth[eth0]:{RESTORED_END}@{BRIDGE}", env=env)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "'netlink'" in r.stderr, r.stderr
    assert not link_exists(RESTORED_END)
    assert not os.path.exists(f"/proc/{tree.root}")
    assert image_digest(tree.images) == before
    r = tree.restore("--external", f"veth[eth0]:{RESTORED_END}@{BRIDGE}")
    assert r.returncode == 0, r.stderr + (tree.images / "restore.log").read_text()
    tree.finish(restored=True)


def host_device_to_move() -> str:
    """A veth end on the host whose peer is on the bridge; `ip -o link` line of it."""
    sh("ip", "link", "add", MOVED, "type", "veth", "peer", "name", MOVED_PEER)
    sh("ip", "link", "set", MOVED_PEER, "master", BRIDGE, "up")
    sh("ip", "link", "set", MOVED, "up")
    return sh("ip", "-o", "link", "show", MOVED).stdout.split(":", 2)[2]


def test_host_device_moved_in(tree):
    """--external netdev[eth0]:DEV moves a host device in as eth0, with the dumped name, ifindex,
    MAC and MTU; the tree works through it as it did through its own veth."""
    tree.dumped()
    host_device_to_move()
    r = tree.restore("--external", f"netdev[eth0]:{MOVED}")
    assert r.returncode == 0, r.stderr + (tree.images / "restore.log").read_text()
    assert not link_exists(MOVED)
    tree.finish(restored=True)


def test_fault_after_move_gives_the_device_back(tree):
    """A failure after a host device was moved in moves it back out, as it was."""
    tree.dumped()
    before = host_device_to_move()
    r = tree.restore("--external", f"netdev[eth0]:{MOVED}", env=dict(os.environ, LXC_CR_FAULT="netdev"))
    assert r.returncode == 1 and "injected fault" in r.stderr, r.stderr
    assert sh("ip", "-o", "link", "show", MOVED).stdout.split(":", 2)[2] == before


def test_failed_dump_releases_the_lock(tree):
    """A dump that fails after the connection was locked leaves the tree running, its namespace
    without the lock, and the connection working."""
    r = tree.dump(env=dict(os.environ, LXC_CR_FAULT="write"))
    assert r.returncode == 1 and "injected fault" in r.stderr, r.stderr
    tables = sh("nsenter", "-t", tree.root, "-n", "nft", "list", "tables").stdout
    assert "lxc_cr" not in tables, tables
    assert not any(p.suffix == ".img" for p in tree.images.iterdir())
    tree.finish(restored=False)


def test_macvlan_round_trip(bridge, tmp_path):
    """A macvlan on a host device comes back on the device --external macvlan[IF]:LINK names,
    with its MAC, MTU, mode and address; the host reaches the program through it."""
    sh("ip", "link", "add", LOWER, "type", "veth", "peer", "name", LOWER_PEER)
    sh("ip", "link", "set", LOWER_PEER, "master", BRIDGE, "up")
    sh("ip", "link", "set", LOWER, "up")
    with unshared(tmp_path, "121_macvlan", ("--net",), ready="waiting") as (unshare, root, log):
        sh("ip", "link", "add", "vnet0mv", "link", LOWER, "type", "macvlan", "mode", "bridge")
        sh("ip", "link", "set", "vnet0mv", "netns", root)
        sh("nsenter", "-t", root, "-n", "sh", "-ec", "ip link set vnet0mv name eth1 address 02:00:00:01:21:02 "
           "mtu 1400 up && ip addr add 10.121.0.2/24 dev eth1")
        (tmp_path / "configured").touch()
        wait_for(log, "READY")
        images = tmp_path / "images"
        r = sh(LXC_CR, "dump", "-t", root, "-D", images, "-o", "dump.log", "-v4", check=False)
        assert r.returncode == 0, r.stderr + (images / "dump.log").read_text()
        unshare.wait(timeout=10)
        r = sh(LXC_CR, "restore", "-D", images, "-d", "-o", "restore.log", "-v4", "--external",
               f"macvlan[eth1]:{LOWER}", check=False)
        assert r.returncode == 0, r.stderr + (images / "restore.log").read_text()
        details = sh("nsenter", "-t", root, "-n", "ip", "-d", "-o", "link", "show", "eth1").stdout
        assert "macvlan mode bridge" in details, details
        with socket.create_connection(("10.121.0.2", 7121), timeout=10) as c:
            c.sendall(b"ping")
            os.kill(root, signal.SIGUSR1)
            c.settimeout(30)
            assert c.recv(4) == b"pong"
        _, status = os.waitpid(root, 0)
        text = log.read_text()
        assert os.waitstatus_to_exitcode(status) == 0 and "PASS" in text and "FAIL" not in text, text
    reap(root)
    sh("ip", "link", "del", LOWER, check=False)


@pytest.mark.parametrize("argv, message", [
    (["restore", "--external", "veth[eth0]"], "--external veth[eth0]: expected veth[IF]:HOST[@BRIDGE]"),
    (["restore", "--external", "macvlan[eth0]:a@b"], "expected veth[IF]:HOST[@BRIDGE], macvlan[IF]:LINK"),
    (["restore", "--veth-pair", "eth0"], "--veth-pair eth0: expected IF=HOST[@BRIDGE]"),
    (["restore", "--veth-pair", "eth0=a", "--external", "veth[eth0]:b"], "eth0 is named by more than one"),
    (["dump", "-t", "1", "--external", "veth[eth0]:a"], "on dump, only files, mounts and the net and pid namespaces can be external"),
])
def test_bad_device_options(tmp_path, argv, message):
    r = sh(LXC_CR, *argv, "-D", tmp_path, check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_unsupported_device_kind_is_refused(bridge, tmp_path):
    """A device of a kind we do not rebuild (a bridge inside) is refused by name, also by
    --check-only, and the tree keeps running."""
    setup = ["sh", "-c", 'ip link add br-net-in type bridge && exec "$0"']
    with unshared(tmp_path, "44_pid_namespace", ("--net",), setup) as (unshare, root, log):
        r = sh(LXC_CR, "dump", "-t", root, "-D", tmp_path / "d", check=False)
        assert r.returncode == 1 and "br-net-in is of kind bridge" in r.stderr, r.stderr
        r = sh(LXC_CR, "dump", "-t", root, "--check-only", check=False)
        assert r.returncode == 1 and "br-net-in is of kind bridge" in r.stdout, r.stdout
        os.kill(root, signal.SIGUSR1)
        assert unshare.wait(timeout=30) == 0
        assert "PASS" in log.read_text()
