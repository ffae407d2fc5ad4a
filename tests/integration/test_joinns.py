"""Joining existing namespaces at restore (`--join-ns NS:PID|PATH`, RPC `join_ns`; engine/joinns.py).

A holder (210_join_ns hold) keeps IPC and UTS namespaces of its own with a host name, a message
queue and a SysV segment.  A tree dumped from namespaces of its own is restored into the
holder's: from inside it sees the holder's host name and queue and not its own queue (the
images' contents are not made in a joined namespace); a tree that lived in the holder's
namespaces (a pod's) gets the holder's live segment attached again.  The holder checks at the
end that its namespace holds what it made and nothing else.  runc sends join_ns for a bundle
whose IPC and UTS namespaces have a path.  A holder of a mount namespace (211_join_mnt hold,
a tmpfs of its own on a directory) gets a tree from a mount namespace of its own restored into
it: the tree sees the holder's tmpfs, not its own, and the holder's mount table gains nothing.
Failures (no such namespace, a namespace of another type, an unsupported kind, a restore
failing late) give one line and leave the holder's namespace and the process table as they were.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess

import pytest

from conftest import BIN_DIR, LXC_CR, NO_CR
from helpers import one_line_error, unshared, wait_for

PROG = BIN_DIR / "210_join_ns"
MNT_PROG = BIN_DIR / "211_join_mnt"
# the test's shell, in the new namespaces: a tmpfs of the program's own on DIR, marked with its role
MARKED = ["sh", "-c", 'mount -t tmpfs joinns "$2" && echo "$1" > "$2/marker" && exec "$0" "$@"']
HOST = "joinns-holder"


@pytest.fixture(autouse=True)
def needs_lxc_cr():
    if NO_CR:
        pytest.skip("needs lxc-cr: without a restore no namespace is joined")


@contextlib.contextmanager
def holder(tmp_path):
    """The holder's PID (PID 1 of its own namespaces) and its log; on exit it must PASS its check."""
    d = tmp_path / "holder"
    d.mkdir()
    with unshared(d, [PROG, "hold", HOST], ("--ipc", "--uts")) as (unshare, pid, log):
        yield pid, log
        os.kill(pid, signal.SIGUSR1)
        unshare.wait(timeout=30)
        wait_for(log, "PASS")
        assert "FAIL" not in log.read_text(), log.read_text()


def run(*argv, env=None):
    return subprocess.run([LXC_CR, *map(str, argv)], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def dump_tree(tmp_path, root, unshare):
    images = tmp_path / "images"
    r = run("dump", "-t", root, "-D", images, "-o", "dump.log", "-v4")
    assert r.returncode == 0, r.stderr + (images / "dump.log").read_text()
    unshare.wait()
    return images


def restore(tmp_path, images, *join, env=None):
    return run("restore", "-D", images, "-d", "--pidfile", tmp_path / "pid", "-o", "restore.log", "-v4",
               *(a for spec in join for a in ("--join-ns", spec)), env=env)


def same_ns(a: int, b: int, kind: str) -> bool:
    return os.stat(f"/proc/{a}/ns/{kind}").st_ino == os.stat(f"/proc/{b}/ns/{kind}").st_ino


def verdict(root: int, log) -> None:
    os.kill(root, signal.SIGUSR1)
    _, status = os.waitpid(root, 0)
    text = log.read_text()
    assert os.waitstatus_to_exitcode(status) == 0 and "PASS" in text and "FAIL" not in text, text


@contextlib.contextmanager
def own_tree(tmp_path):
    """210_join_ns own, dumped and gone: yields (its images, its root PID, its log)."""
    d = tmp_path / "tree"
    d.mkdir()
    with unshared(d, [PROG, "own", HOST], ("--ipc", "--uts")) as (unshare, root, log):
        yield dump_tree(d, root, unshare), root, log


def test_joinns_cli_own_namespaces_restored_into_the_holders(tmp_path):
    with holder(tmp_path) as (hpid, _), own_tree(tmp_path) as (images, root, log):
        r = restore(tmp_path, images, f"ipc:/proc/{hpid}/ns/ipc", f"uts:{hpid}")
        assert r.returncode == 0, r.stderr + (images / "restore.log").read_text()
        assert int((tmp_path / "pid").read_text()) == root
        assert same_ns(root, hpid, "ipc") and same_ns(root, hpid, "uts")
        assert not same_ns(root, os.getpid(), "pid")        # its own PID namespace is made again
        verdict(root, log)


def test_joinns_cli_pod_tree_gets_the_holders_segment_again(tmp_path):
    with holder(tmp_path) as (hpid, _):
        d = tmp_path / "tree"
        d.mkdir()
        enter = ["nsenter", "-t", str(hpid), "--ipc", "--uts", "--"]
        with unshared(d, [*enter, PROG, "pod", HOST]) as (unshare, root, log):
            assert same_ns(root, hpid, "ipc")
            images = dump_tree(d, root, unshare)
            r = restore(tmp_path, images, f"ipc:{hpid}", f"uts:/proc/{hpid}/ns/uts")
            assert r.returncode == 0, r.stderr + (images / "restore.log").read_text()
            assert same_ns(root, hpid, "ipc")
            verdict(root, log)


BAD = [
    ("ipc:/nonexistent-joinns", "cannot open /nonexistent-joinns"),
    ("ipc:/proc/{h}/ns/uts", "is a uts namespace, not a ipc namespace"),
    ("uts:/proc/{h}/status", "is no namespace, not a uts namespace"),
    ("user:{h}", "joining a user namespace at restore is not supported"),
    ("time:/proc/{h}/ns/time", "joining a time namespace at restore is not supported"),
    ("mnt:/proc/{h}/ns/net", "is a net namespace, not a mnt namespace"),
    ("ipc:{h},extra", "extra options"),
    ("ipc:relative/path", "a PID or an absolute path"),
    ("ipc", "expected NS:PID or NS:PATH"),
]


def test_joinns_bad_namespace_is_refused_before_anything_is_made(tmp_path):
    with holder(tmp_path) as (hpid, _), own_tree(tmp_path) as (images, root, log):
        for spec, what in BAD:
            spec = spec.format(h=hpid)
            line = one_line_error(restore(tmp_path, images, spec))
            assert f"--join-ns {spec}" in line and what in line, line
            assert not os.path.exists(f"/proc/{root}")
        line = one_line_error(restore(tmp_path, images, f"uts:{hpid}", f"uts:{hpid}"))
        assert "joined more than once" in line
        r = restore(tmp_path, images, f"ipc:{hpid}", f"uts:{hpid}")     # the images are as they were
        assert r.returncode == 0, r.stderr
        verdict(root, log)


def test_joinns_failed_restore_leaves_the_joined_namespaces_as_they_were(tmp_path):
    """A fault after every task is built: nothing is left, the holder's namespaces hold exactly
    what they held (the holder checks), and the untouched images restore afterwards."""
    with holder(tmp_path) as (hpid, _), own_tree(tmp_path) as (images, root, log):
        join = (f"ipc:{hpid}", f"uts:{hpid}")
        line = one_line_error(restore(tmp_path, images, *join, env={"LXC_CR_FAULT": "registers"}))
        assert "injected fault" in line
        assert not os.path.exists(f"/proc/{root}")
        assert subprocess.run(["nsenter", "-t", str(hpid), "--uts", "hostname"], capture_output=True,
                              text=True).stdout.strip() == HOST
        r = restore(tmp_path, images, *join)
        assert r.returncode == 0, r.stderr
        verdict(root, log)


@pytest.fixture
def netns():
    """`ip netns add` with lo up and the address 46_net_namespace checks; named with the branch."""
    name = f"lxccr-joinns-{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for argv in (["netns", "add", name], ["-n", name, "link", "set", "lo", "up"],
                 ["-n", name, "addr", "add", "127.1.2.3/8", "dev", "lo"]):
        subprocess.run(["ip", *argv], check=True, capture_output=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def net_state(name: str) -> tuple:
    def ip(*argv):
        return subprocess.run(["ip", "-j", "-n", name, *argv], check=True, capture_output=True, text=True).stdout
    return os.stat(f"/run/netns/{name}").st_ino, ip("link"), ip("addr"), ip("route", "show", "table", "all")


def test_joinns_cli_network_namespace_joined_not_made(tmp_path, netns):
    """46_net_namespace in a network namespace of its own (lo up, 127.1.2.3 and 127.1.2.4) is
    restored into a named one holding lo and 127.1.2.3 only: it works there (its check from
    inside), and the namespace gained nothing (no 127.1.2.4), also after a failed restore."""
    setup = ["sh", "-c", 'ip link set lo up && ip addr add 127.1.2.3/8 dev lo && '
                         'ip addr add 127.1.2.4/8 dev lo && exec "$0"']
    before = net_state(netns)
    with unshared(tmp_path, "46_net_namespace", ("--net",), setup) as (unshare, root, log):
        images = dump_tree(tmp_path, root, unshare)
        join = f"net:/run/netns/{netns}"
        line = one_line_error(restore(tmp_path, images, join, env={"LXC_CR_FAULT": "registers"}))
        assert "injected fault" in line and not os.path.exists(f"/proc/{root}")
        assert net_state(netns) == before
        r = restore(tmp_path, images, join)
        assert r.returncode == 0, r.stderr + (images / "restore.log").read_text()
        assert os.stat(f"/proc/{root}/ns/net").st_ino == before[0]
        assert net_state(netns) == before
        verdict(root, log)


@contextlib.contextmanager
def mount_holder_and_tree(tmp_path):
    """211_join_mnt: the holder (a tmpfs of its own on DIR, marked "hold") and a tree in a
    mount namespace of its own (its tmpfs on DIR, marked "tree"), dumped and gone: yields
    (the holder's PID, the images, the tree's root PID, its log); the holder must PASS its
    check at the end: its mount table gained nothing."""
    shared = tmp_path / "dir"
    shared.mkdir()
    hold_dir, tree_dir = tmp_path / "holder", tmp_path / "tree"
    hold_dir.mkdir()
    tree_dir.mkdir()
    with unshared(hold_dir, [MNT_PROG, "hold", shared], ("--mount",), MARKED) as (hold, hpid, hlog):
        with unshared(tree_dir, [MNT_PROG, "tree", shared], ("--mount", "--mount-proc"), MARKED) as \
                (unshare, root, log):
            yield hpid, dump_tree(tree_dir, root, unshare), root, log
        os.kill(hpid, signal.SIGUSR1)
        hold.wait(timeout=30)
        wait_for(hlog, "PASS")
        assert "FAIL" not in hlog.read_text(), hlog.read_text()


def joined_mount_ns(root: int, hpid: int, log) -> None:
    """From inside, both tasks see the holder's marker (the verdict); from outside, the root is
    in the holder's mount namespace."""
    assert same_ns(root, hpid, "mnt") and not same_ns(root, os.getpid(), "mnt")
    verdict(root, log)


def test_joinns_cli_mount_namespace_joined_not_made(tmp_path):
    """Restored into the holder's mount namespace, after a restore that failed late."""
    with mount_holder_and_tree(tmp_path) as (hpid, images, root, log):
        line = one_line_error(restore(tmp_path, images, f"mnt:{hpid}", env={"LXC_CR_FAULT": "registers"}))
        assert "injected fault" in line and not os.path.exists(f"/proc/{root}")
        r = restore(tmp_path, images, f"mnt:/proc/{hpid}/ns/mnt")
        assert r.returncode == 0, r.stderr + (images / "restore.log").read_text()
        joined_mount_ns(root, hpid, log)


def test_joinns_rpc_mount_namespace(tmp_path):
    """RPC join_ns {mnt, ns_file}, as runc sends it for a mount namespace with a path."""
    from test_rpc import Client, _dir_fd, pb, restore_request
    with mount_holder_and_tree(tmp_path) as (hpid, images, root, log):
        fd = _dir_fd(images)
        try:
            resp, code = Client(tmp_path).call(restore_request(fd, fd, join_ns=[pb.JoinNamespace(
                ns="mnt", ns_file=f"/proc/{hpid}/ns/mnt")]))
        finally:
            os.close(fd)
        assert code == 0 and resp.success and resp.restore.pid == root, (images / "restore.log").read_text()
        joined_mount_ns(root, hpid, log)


def test_joinns_option_belongs_to_restore(tmp_path):
    line = one_line_error(run("dump", "-t", os.getpid(), "-D", tmp_path / "d", "--join-ns", "ipc:1"))
    assert "--join-ns does not apply to dump" in line


# --- runc: a bundle whose IPC and UTS namespaces have a path (a pod's) ------------------------

def test_joinns_runc_ipc_and_uts_namespaces_with_a_path(tmp_path):
    """runc sends join_ns for both at restore: the container comes back counting in the
    holder's namespaces, and the holder's namespace holds what it held."""
    from test_runc import Container, require_runc
    require_runc()
    with holder(tmp_path) as (hpid, _):
        c = Container(tmp_path, "joinns")
        try:
            config = json.loads((c.bundle / "config.json").read_text())
            config.pop("hostname", None)        # runc would set it in the holder's namespace
            spaces = config["linux"]["namespaces"]
            for kind in ("ipc", "uts"):
                spaces[spaces.index({"type": kind})] = {"type": kind, "path": f"/proc/{hpid}/ns/{kind}"}
            (c.bundle / "config.json").write_text(json.dumps(config))
            inner, _ = c.start()
            host_pid = c.state()["pid"]
            c.checkpoint()
            _, last = c.last_lines_until_eof()
            c.restore()
            assert c.state()["pid"] == host_pid
            assert c.next_line() == (inner, last + 1)
            assert same_ns(host_pid, hpid, "ipc") and same_ns(host_pid, hpid, "uts")
            assert c.exec("cat", "/proc/sys/kernel/hostname").strip() == HOST
            assert f"opts.join_ns ipc:/proc/{hpid}/ns/ipc" in (c.work / "restore.log").read_text()
        finally:
            c.destroy()


@pytest.mark.parametrize("ns", ["user", "time"])
def test_joinns_rpc_unsupported_kind_gets_an_error_answer(tmp_path, ns):
    """What runc sends for a user or time namespace with a path: an error answer naming the
    option and the namespace, before the images are even read."""
    from test_rpc import Client, _dir_fd, pb, restore_request
    images = _dir_fd(tmp_path / "images")
    try:
        resp, code = Client(tmp_path).call(restore_request(images, images, join_ns=[pb.JoinNamespace(
            ns=ns, ns_file=f"/proc/{os.getpid()}/ns/{ns}")]))
    finally:
        os.close(images)
    assert code == 1 and not resp.success
    assert f"opts.join_ns {ns}:/proc/{os.getpid()}/ns/{ns}: joining a {ns} namespace" in resp.cr_errmsg
