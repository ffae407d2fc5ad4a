"""External namespaces through runc (`runc --criu hooks/criu`): a bundle whose config.json gives
the network namespace a path (`ip netns add`), so that runc names it at checkpoint as
`net[INO]:extRootNetNS` and hands it back at restore as an open file (inherit_fd extRootNetNS).

The namespace holds lo (up) and a veth whose other end is on the host, with an address on
each end.  The container serves a file over HTTP (busybox httpd) on the namespace's address and
counts: each line says its PID inside, the count, the network namespace it is in, and how many
times its address shows in /proc/net/fib_trie.  After a restore the counter goes on where it
stopped, in the same namespace (same inode as the named one) with the address still there, and
the host still reaches the listener through the veth: the namespace was joined, not remade, and
the tree's sockets in it were dumped and restored.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import LXC_CR
from test_runc import Container, require_runc

PORT = 8080


class Netns:
    """`ip netns add` with lo up and a veth to the host, each end with an address; named with
    the branch (extns) and the test's PID."""

    def __init__(self):
        n = os.getpid() % 250 + 1
        self.name = f"lxccr-extns-{os.getpid()}"
        self.path = Path("/run/netns") / self.name
        self.host_if = f"extns-h{os.getpid() % 100000}"
        self.inside, self.host_ip = f"10.233.{n}.1", f"10.233.{n}.254"
        self.destroy()
        for argv in (["netns", "add", self.name],
                     ["-n", self.name, "link", "set", "lo", "up"],
                     ["link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name],
                     ["-n", self.name, "addr", "add", f"{self.inside}/24", "dev", "eth0"],
                     ["-n", self.name, "link", "set", "eth0", "up"],
                     ["addr", "add", f"{self.host_ip}/24", "dev", self.host_if],
                     ["link", "set", self.host_if, "up"]):
            subprocess.run(["ip", *argv], check=True, capture_output=True)

    def inode(self) -> int:
        return os.stat(self.path).st_ino

    def state(self) -> tuple:
        """What lives in the namespace: links (name, state), addresses, routes."""
        def ip(*argv):
            return json.loads(subprocess.run(["ip", "-j", "-n", self.name, *argv], check=True,
                                             capture_output=True, text=True).stdout)
        links = sorted((link["ifname"], link["operstate"]) for link in ip("link"))
        addrs = sorted((a["ifname"], i["local"], i["prefixlen"]) for a in ip("addr") for i in a["addr_info"])
        routes = sorted(json.dumps(r, sort_keys=True) for r in ip("route"))
        return self.inode(), links, addrs, routes

    def recreate(self) -> None:
        """The same name for a new namespace: runc then names another inode than the container's."""
        subprocess.run(["ip", "netns", "del", self.name], check=True, capture_output=True)
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class NetContainer(Container):
    """The runc test container, in the named network namespace, serving and counting."""

    def __init__(self, tmp_path: Path, name: str, netns: Netns):
        super().__init__(tmp_path, name)
        self.netns = netns
        rootfs = self.bundle / "rootfs"
        for applet in ("httpd", "readlink", "grep"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "www").mkdir()
        (rootfs / "www" / "index.html").write_text(f"served by {self.id}\n")
        config = json.loads((self.bundle / "config.json").read_text())
        spaces = config["linux"]["namespaces"]
        assert {"type": "network"} in spaces
        spaces[spaces.index({"type": "network"})] = {"type": "network", "path": str(netns.path)}
        ip = netns.inside
        config["process"]["args"] = ["/bin/sh", "-c", (
            f"httpd -f -p {ip}:{PORT} -h /www & i=0; while :; do i=$((i+1)); "
            f"echo \"$$ $i $(readlink /proc/self/ns/net) $(grep -c ' {ip}$' /proc/net/fib_trie)\"; sleep 0.05; done")]
        (self.bundle / "config.json").write_text(json.dumps(config))

    def next_line(self) -> tuple[int, int]:
        """(PID inside, count); the line must also say it runs in the named namespace with its address."""
        line = self.out.readline()
        assert line, "the container's stdout pipe ended"
        pid, count, ns, addresses = line.split()
        assert ns == f"net:[{self.netns.inode()}]" and int(addresses) >= 1, line
        return int(pid), int(count)

    def last_lines_until_eof(self) -> tuple[int, int]:
        last = None
        for line in self.out:
            pid, count = line.split()[:2]
            last = int(pid), int(count)
        self.out.close()
        return last

    def fetch(self) -> str:
        with urllib.request.urlopen(f"http://{self.netns.inside}:{PORT}/index.html", timeout=10) as r:
            return r.read().decode()


@pytest.fixture
def netns():
    require_runc()
    ns = Netns()
    yield ns
    ns.destroy()


@pytest.fixture
def net_container(tmp_path, request, netns):
    c = NetContainer(tmp_path, "extns-" + request.node.name.split("[")[0].replace("test_extns_", "")[:10], netns)
    yield c
    c.destroy()


def test_extns_runc_network_namespace_with_a_path(net_container):
    """runc names the namespace external at checkpoint and hands it back at restore: the
    container comes back in that very namespace (same inode), nothing in it changed, its
    counter goes on, and its listener answers the host through the veth again."""
    c, ns = net_container, net_container.netns
    assert c.start()[0] == 1
    host_pid = c.state()["pid"]
    assert c.fetch() == f"served by {c.id}\n"
    before = ns.state()
    c.checkpoint()
    _, last = c.last_lines_until_eof()
    inventory = subprocess.run([LXC_CR, "show", c.images, "inventory.img"], check=True, capture_output=True,
                               text=True).stdout
    assert json.loads(inventory)["inventory.img"].get("ext_net_key") == "extRootNetNS"
    assert "net" not in json.loads(inventory)["inventory.img"]
    assert ns.state() == before
    c.restore()
    assert c.state()["pid"] == host_pid
    assert c.next_line() == (1, last + 1)
    assert os.stat(f"/proc/{host_pid}/ns/net").st_ino == ns.inode()
    assert c.fetch() == f"served by {c.id}\n"
    assert ns.state() == before


def test_extns_runc_failed_restore_leaves_the_namespace_alone(net_container):
    """A restore that fails once the tree exists (in the caller's namespace) leaves no task and
    the namespace as it was; the same images then restore fine."""
    c, ns = net_container, net_container.netns
    c.start()
    host_pid = c.state()["pid"]
    c.checkpoint()
    _, last = c.last_lines_until_eof()
    before = ns.state()
    r = c.restore(env=dict(os.environ, LXC_CR_FAULT="registers"))
    assert r.returncode != 0
    with contextlib.suppress(ChildProcessError):
        os.waitpid(host_pid, os.WNOHANG)
    assert not os.path.exists(f"/proc/{host_pid}") and c.state() is None
    assert ns.state() == before
    c.restore()
    assert c.next_line() == (1, last + 1)
    assert c.fetch() == f"served by {c.id}\n"


def test_extns_restore_without_the_namespace_is_refused(net_container, tmp_path):
    """Images whose network namespace is external cannot be restored without it: one line
    naming the key, nothing created, the namespace untouched."""
    c, ns = net_container, net_container.netns
    c.start()
    host_pid = c.state()["pid"]
    c.checkpoint()
    c.last_lines_until_eof()
    before = ns.state()
    r = subprocess.run([LXC_CR, "restore", "-D", c.images, "-d", "-o", str(tmp_path / "r.log")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--inherit-fd fd[N]:extRootNetNS" in r.stderr, r.stderr
    assert not os.path.exists(f"/proc/{host_pid}") and ns.state() == before
    with open("/etc/hostname") as wrong:       # a file that is no namespace is refused too
        r = subprocess.run([LXC_CR, "restore", "-D", c.images, "-d", "-o", str(tmp_path / "r2.log"),
                            "--inherit-fd", f"fd[{wrong.fileno()}]:extRootNetNS"], capture_output=True,
                           text=True, timeout=60, pass_fds=(wrong.fileno(),))
    assert r.returncode == 1 and "is not a net namespace" in r.stderr, r.stderr
    assert not os.path.exists(f"/proc/{host_pid}")


def test_extns_runc_checkpoint_of_another_inode_fails_and_runs_on(net_container):
    """The path now names another namespace than the container's (deleted and made again):
    runc names that inode, the dump refuses it, and the container runs on as before."""
    c, ns = net_container, net_container.netns
    c.start()
    old = ns.inode()
    ns.recreate()
    r = c.checkpoint(env=dict(os.environ))
    assert r.returncode != 0
    assert f"net namespace is net:[{old}], not {ns.inode()}" in (c.work / "dump.log").read_text()
    assert c.state()["status"] == "running"
    line = c.out.readline().split()
    assert line[2] == f"net:[{old}]"
    assert int(c.out.readline().split()[1]) == int(line[1]) + 1
    assert not (c.images / "inventory.img").exists()


# the init of the holder's namespace reaps what is reparented to it, as a pod's pause process does
REAPER = """import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    signal.sigtimedwait([signal.SIGCHLD], 1)
"""


class PidHolder:
    """A PID namespace that belongs to someone else (as a pod's infra container's): its init,
    started by `unshare --pid --fork`, reaps orphans; the container joins it by path."""

    def __init__(self):
        self.unshare = subprocess.Popen(["unshare", "--pid", "--fork", sys.executable, "-c", REAPER])
        for _ in range(500):
            children = Path(f"/proc/{self.unshare.pid}/task/{self.unshare.pid}/children").read_text().split()
            if children:
                break
            time.sleep(0.01)
        self.init = int(children[0])
        self.path = Path(f"/proc/{self.init}/ns/pid")

    def inode(self) -> int:
        return os.stat(self.path).st_ino

    def destroy(self) -> None:
        self.unshare.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.init, 9)
        self.unshare.wait()


@pytest.fixture
def pid_container(tmp_path, request):
    require_runc()
    holder = PidHolder()
    c = Container(tmp_path, "extns-pid")
    config = json.loads((c.bundle / "config.json").read_text())
    spaces = config["linux"]["namespaces"]
    spaces[spaces.index({"type": "pid"})] = {"type": "pid", "path": str(holder.path)}
    (c.bundle / "config.json").write_text(json.dumps(config))
    yield c, holder
    c.destroy()
    holder.destroy()


def test_extns_runc_pid_namespace_with_a_path(pid_container):
    """The container joined a PID namespace whose init is someone else's: runc names it
    external at checkpoint (extRootPidNS) and hands it back at restore; the container comes
    back in that namespace with the same PIDs inside and outside, its counter going on."""
    c, holder = pid_container
    inner, _ = c.start()
    assert inner != 1
    host_pid = c.state()["pid"]
    c.checkpoint()
    _, last = c.last_lines_until_eof()
    inventory = json.loads(subprocess.run([LXC_CR, "show", c.images, "inventory.img"], check=True,
                                          capture_output=True, text=True).stdout)["inventory.img"]
    assert inventory.get("ext_pid_key") == "extRootPidNS"
    c.restore()
    assert c.state()["pid"] == host_pid
    assert c.next_line() == (inner, last + 1)
    assert os.stat(f"/proc/{host_pid}/ns/pid").st_ino == holder.inode()
    status = Path(f"/proc/{host_pid}/status").read_text()
    assert f"NSpid:\t{host_pid}\t{inner}\n" in status
    assert os.path.exists(f"/proc/{holder.init}")
