"""CRIU's swrk RPC (`criu swrk N`), driven the way runc, crun and podman drive it.

A small client here makes the SOCK_SEQPACKET socketpair, starts `hooks/criu swrk N` with the
server end, sends one protobuf Request per packet and answers the notifications.  Real
self-checking programs are dumped and restored through it.
"""
from __future__ import annotations

import array
import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import NO_CR, REPO, Cycle, _kill_leftovers, _reap_all
from helpers import SETUP_LO, unshared

from lxc_cr import rpc_pb2 as pb

CRIU = REPO / "hooks" / "criu"
STATS_HEADER = struct.Struct("<III")
DUMP_NOTIFIES = ["pre-dump", "post-dump"]
RESTORE_NOTIFIES = ["pre-restore", "post-restore", "pre-resume", "post-resume"]

pytestmark = pytest.mark.skipif(NO_CR, reason="needs lxc-cr")


class Client:
    """One swrk session: the client end of the socketpair and the server process."""

    def __init__(self, tmp_path: Path, pass_fds=()):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.stderr = tmp_path / f"swrk-{time.monotonic_ns()}.err"
        with open(self.stderr, "wb") as err:
            # the server end keeps an arbitrary number, as with go-criu's probes
            self.server = subprocess.Popen([CRIU, "swrk", str(theirs.fileno())],
                                           pass_fds=(theirs.fileno(), *pass_fds), stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL, stderr=err)
        theirs.close()
        self.notifies: list[tuple[str, int | None]] = []
        self.passed_fds: list[int] = []

    def send_raw(self, data: bytes) -> None:
        self.sock.send(data)

    def receive(self):
        data, ancillary, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self.passed_fds += array.array("i", raw[:len(raw) - len(raw) % 4])
        return pb.Response.FromString(data) if data else None

    def call(self, req, answer=lambda script: True, close_at=None):
        """Send req, answer every NOTIFY with answer(script); close the socket at the notify
        named close_at.  Returns the final Response (None when closed) and the exit status."""
        self.sock.send(req.SerializeToString())
        while True:
            resp = self.receive()
            if resp is None or resp.type != pb.NOTIFY:
                break
            script = resp.notify.script
            self.notifies.append((script, resp.notify.pid if resp.notify.HasField("pid") else None))
            if script == close_at:
                self.sock.close()
                return None, self.exit_status()
            self.sock.send(pb.Request(type=pb.NOTIFY, notify_success=answer(script)).SerializeToString())
        return resp, self.exit_status()

    def exit_status(self) -> int:
        code = self.server.wait(timeout=120)
        assert "Traceback" not in self.stderr.read_text(), self.stderr.read_text()
        return code

    def scripts(self) -> list[str]:
        return [s for s, _ in self.notifies]


def _dir_fd(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def dump_request(pid: int, images_fd: int, work_fd: int, **opts):
    o = pb.Options(images_dir_fd=images_fd, work_dir_fd=work_fd, pid=pid, log_level=4, log_file="dump.log",
                   notify_scripts=True, manage_cgroups=True, config_file="/etc/criu/lxc-cr-rpc-none.conf",
                   # present but false, as go-criu sends them
                   leave_running=False, shell_job=False, tcp_established=False, ext_unix_sk=False,
                   file_locks=False, auto_dedup=False, lazy_pages=False, **opts)
    return pb.Request(type=pb.DUMP, opts=o)


def restore_request(images_fd: int, work_fd: int, **opts):
    o = pb.Options(images_dir_fd=images_fd, work_dir_fd=work_fd, log_level=4, log_file="restore.log",
                   notify_scripts=True, rst_sibling=True, manage_cgroups=True, evasive_devices=True,
                   orphan_pts_master=True, **opts)
    return pb.Request(type=pb.RESTORE, opts=o)


def read_stats(path: Path):
    data = path.read_bytes()
    magic, kind, size = STATS_HEADER.unpack_from(data)
    assert (magic, kind) == (0x55105940, 0x57093306) and len(data) == STATS_HEADER.size + size
    return pb.Stats.FromString(data[STATS_HEADER.size:])


class RpcCycle(Cycle):
    """Cycle (conftest) with each `lxc-cr dump|restore` replaced by the same request over swrk;
    the restore's pidfile is written from the RESTORE answer's pid."""

    def lxc_cr(self, verb, argv, logname):
        work = self.base / "work-dir"
        images, work_fd = _dir_fd(self.imgdir), _dir_fd(work)
        try:
            req = dump_request(self.pid, images, work_fd) if verb == "dump" else restore_request(images, work_fd)
            c = Client(self.base)
            resp, code = c.call(req)
        finally:
            os.close(images)
            os.close(work_fd)
        setattr(self, f"{verb}_notifies", c.notifies)
        if code != 0 or resp is None or not resp.success:
            self.fail(f"RPC {verb}: exit {code}, response {resp}\n{_log(work / logname)}")
        if verb == "dump" and (not resp.HasField("dump") or resp.dump.restored):
            self.fail(f"RPC dump: bad answer {resp}")
        if verb == "restore":
            self.pidfile.write_text(str(resp.restore.pid))


def _log(path: Path) -> str:
    return path.read_text() if path.exists() else f"<no {path}>"


# --- requests answered at once ---------------------------------------------------------------

def test_version_and_feature_check_without_opts(tmp_path):
    """go-criu's probes: no opts; the version is 3.17.1 without gitid; every feature field is set
    and none claims what does not exist; exit 0 right after the answer."""
    c = Client(tmp_path)
    resp, code = c.call(pb.Request(type=pb.VERSION))
    assert code == 0 and resp.type == pb.VERSION and resp.success
    v = resp.version
    assert (v.major_number, v.minor_number, v.sublevel) == (3, 17, 1) and not v.HasField("gitid")
    c = Client(tmp_path)
    resp, code = c.call(pb.Request(type=pb.FEATURE_CHECK, features=pb.Features(mem_track=True)))
    assert code == 0 and resp.type == pb.FEATURE_CHECK and resp.success
    f = resp.features
    assert all(f.HasField(n) for n in ("mem_track", "lazy_pages", "pidfd_store"))
    assert not f.mem_track and not f.lazy_pages


def test_canned_version_answer_is_the_parsed_one(tmp_path):
    """runc's plain VERSION request is answered from lxc_cr/rpc_canned.py without protobuf: the
    same bytes as the parsed path gives (a VERSION request with one more field goes that way),
    and the built module is what rpc.py makes now (not stale)."""
    from lxc_cr import rpc, rpc_canned
    assert {"ANSWERS": rpc_canned.ANSWERS, "CLI_DEFAULTS": rpc_canned.CLI_DEFAULTS} == rpc.canned()
    answers = []
    for req in (pb.Request(type=pb.VERSION), pb.Request(type=pb.VERSION, notify_success=True)):
        c = Client(tmp_path)
        c.sock.send(req.SerializeToString())
        answers.append(c.sock.recv(65536))
        assert c.exit_status() == 0
    assert answers[0] == answers[1] == rpc_canned.ANSWERS[pb.Request(type=pb.VERSION).SerializeToString()]


def test_check(tmp_path):
    resp, code = Client(tmp_path).call(pb.Request(type=pb.CHECK))
    assert code == 0 and resp.type == pb.CHECK and resp.success


def test_pre_dump_is_refused_clearly(tmp_path):
    """FEATURE_CHECK says mem_track=false, so a pre-dump gets an error naming why."""
    images = _dir_fd(tmp_path / "images")
    for kind in (pb.PRE_DUMP, pb.SINGLE_PRE_DUMP):
        req = pb.Request(type=kind, opts=pb.Options(images_dir_fd=images, pid=os.getpid(), track_mem=True))
        resp, code = Client(tmp_path).call(req)
        assert code == 1 and resp.type == kind and not resp.success and "memory" in resp.cr_errmsg
    os.close(images)


@pytest.mark.parametrize("what, data, message", [
    ("garbage bytes", b"\xff\xff\xff\xff", "cannot parse"),
    ("an unknown type", bytes([0x08, 99]), "missing or unknown"),
    ("a DUMP without opts", pb.Request(type=pb.DUMP).SerializeToString(), "no opts"),
    ("a DUMP without images_dir_fd", pb.Request(type=pb.DUMP, opts=pb.Options(pid=1)).SerializeToString(),
     "images_dir_fd is missing"),
    ("a RESTORE with a closed images_dir_fd", pb.Request(type=pb.RESTORE, opts=pb.Options(
        images_dir_fd=987)).SerializeToString(), "images_dir_fd 987"),
    ("a DUMP with a page server", pb.Request(type=pb.DUMP, opts=pb.Options(images_dir_fd=0, pid=1, ps=pb.PageServerInfo(
        port=1234))).SerializeToString(), "page server"),
])
def test_bad_requests_get_an_error_answer(tmp_path, what, data, message):
    c = Client(tmp_path)
    c.send_raw(data)
    resp = c.receive()
    assert resp is not None and not resp.success and message in resp.cr_errmsg, (what, resp)
    assert resp.cr_errno != 0
    assert c.exit_status() == 1


# --- dump and restore ------------------------------------------------------------------------

def test_dump_and_restore_with_notifies(progs_built, tmp_path):
    """A real tree, dumped and restored over swrk: the notify sequences in CRIU's order, the root
    restored as our child (rst_sibling) with its PID, stats files in the work dir, and the
    program's own checks pass."""
    cycle = RpcCycle(progs_built / "30_tree_basic", tmp_path)
    cycle.run((), (), (), 30)
    assert [s for s, _ in cycle.dump_notifies] == DUMP_NOTIFIES
    assert cycle.restore_notifies == [("pre-restore", None), ("post-restore", cycle.pid), ("pre-resume", None),
                                      ("post-resume", None)]
    work = tmp_path / "work-dir"
    assert (work / "dump.log").exists() and (work / "restore.log").exists()
    dump_stats = read_stats(work / "stats-dump").dump
    assert dump_stats.pages_written > 0 and dump_stats.frozen_time > 0
    assert read_stats(work / "stats-restore").restore.pages_restored == dump_stats.pages_written


def test_namespaced_tree_notifies(tmp_path):
    """A tree with PID and network namespaces of its own: network-lock at dump, and
    setup-namespaces with the root's PID and network-unlock at restore."""
    with unshared(tmp_path, "46_net_namespace", ("--net",), SETUP_LO) as (unshare, root, log):
        images, work = _dir_fd(tmp_path / "images"), _dir_fd(tmp_path / "work")
        c = Client(tmp_path)
        resp, code = c.call(dump_request(root, images, work))
        assert code == 0 and resp.success, (resp, _log(tmp_path / "work/dump.log"))
        assert c.scripts() == ["pre-dump", "network-lock", "post-dump"]
        unshare.wait(timeout=10)
        c = Client(tmp_path)
        resp, code = c.call(restore_request(images, work))
        os.close(images)
        os.close(work)
        assert code == 0 and resp.success and resp.restore.pid == root, (resp, _log(tmp_path / "work/restore.log"))
        assert c.notifies == [("pre-restore", None), ("setup-namespaces", root), ("post-setup-namespaces", None),
                              ("post-restore", root), ("network-unlock", None), ("pre-resume", None),
                              ("post-resume", None)]
        os.kill(root, signal.SIGUSR1)
        _, status = os.waitpid(root, 0)
        assert os.waitstatus_to_exitcode(status) == 0 and "PASS" in log.read_text(), log.read_text()


def test_inherit_fd_hands_in_a_new_stdio_pipe(progs_built, tmp_path):
    """As runc restores a container's stdio: the dumped pipe, named by its original inode
    (pipe:[INO]), is replaced by the fd the client passes; the program's PASS, written to its
    stdout after restore, arrives on the new pipe."""
    r, w = os.pipe()
    prog = subprocess.Popen([progs_built / "160_inherit_stdio"], stdout=w, stderr=w, stdin=subprocess.DEVNULL,
                            cwd=tmp_path, start_new_session=True)
    os.close(w)
    try:
        with os.fdopen(r) as old:
            assert old.readline() == "READY\n"
            key = f"pipe:[{os.fstat(old.fileno()).st_ino}]"
            images, work = _dir_fd(tmp_path / "images"), _dir_fd(tmp_path / "work")
            resp, code = Client(tmp_path).call(dump_request(prog.pid, images, work))
            assert code == 0 and resp.success, resp
            prog.wait(timeout=10)
            assert old.read() == ""
        r, w = os.pipe()
        c = Client(tmp_path, pass_fds=(w,))
        resp, code = c.call(restore_request(images, work, inherit_fd=[pb.InheritFd(key=key, fd=w)]))
        os.close(w)
        os.close(images)
        os.close(work)
        assert code == 0 and resp.restore.pid == prog.pid, (resp, _log(tmp_path / "work/restore.log"))
        os.kill(prog.pid, signal.SIGUSR1)
        _, status = os.waitpid(prog.pid, 0)
        with os.fdopen(r) as new:
            out = new.read()
        assert os.waitstatus_to_exitcode(status) == 0 and "PASS" in out.splitlines(), out
    finally:
        _kill_leftovers(prog.pid)


def test_inherit_fd_of_a_closed_fd_is_refused(tmp_path):
    images = _dir_fd(tmp_path / "images")
    resp, code = Client(tmp_path).call(restore_request(images, images, inherit_fd=[pb.InheritFd(
        key="pipe:[1]", fd=999)]))
    os.close(images)
    assert code == 1 and not resp.success and "fd 999 is not open" in resp.cr_errmsg


# --- failure paths ---------------------------------------------------------------------------

@contextlib.contextmanager
def a_tree_to_leave_untouched(progs_built, tmp_path):
    """A running program and an fd on its empty image directory.  Afterwards the tree must look
    never dumped: no image on disk, and the program's own checks pass when told to finish."""
    cycle = Cycle(progs_built / "30_tree_basic", tmp_path)
    cycle.start(())
    cycle.wait_ready()
    images = _dir_fd(cycle.imgdir)
    try:
        yield cycle, images
        assert [p.name for p in cycle.imgdir.iterdir() if p.name.endswith(".img")] == []
        cycle.signal_and_wait(30, restored=False)
    finally:
        os.close(images)
        _kill_leftovers(cycle.pid)


@pytest.mark.parametrize("refuse_at", DUMP_NOTIFIES)
def test_a_refused_notify_leaves_the_tree_running(progs_built, tmp_path, refuse_at):
    with a_tree_to_leave_untouched(progs_built, tmp_path) as (cycle, images):
        c = Client(tmp_path)
        resp, code = c.call(dump_request(cycle.pid, images, images), answer=lambda s: s != refuse_at)
        assert code == 1 and not resp.success and refuse_at in resp.cr_errmsg and resp.HasField("dump")
        assert c.scripts()[-1] == refuse_at


@pytest.mark.parametrize("close_at", DUMP_NOTIFIES)
def test_a_client_closing_mid_dump_leaves_the_tree_running(progs_built, tmp_path, close_at):
    with a_tree_to_leave_untouched(progs_built, tmp_path) as (cycle, images):
        resp, code = Client(tmp_path).call(dump_request(cycle.pid, images, images), close_at=close_at)
        assert resp is None and code == 1


def test_a_client_gone_without_notifies_leaves_the_tree_running(progs_built, tmp_path):
    """Without notify_scripts (crun's dump), a client that went away is noticed before the tree
    is killed: nobody would learn that the dump exists."""
    with a_tree_to_leave_untouched(progs_built, tmp_path) as (cycle, images):
        c = Client(tmp_path)
        c.sock.send(_without_notify(dump_request(cycle.pid, images, images)))
        c.sock.shutdown(socket.SHUT_RDWR)
        c.sock.close()
        assert c.exit_status() == 1


def _without_notify(req) -> bytes:
    req.opts.notify_scripts = False
    return req.SerializeToString()


@pytest.mark.parametrize("refuse_at", ["pre-restore", "post-restore", "pre-resume"])
def test_a_failed_restore_leaves_nothing(progs_built, tmp_path, refuse_at):
    """A restore vetoed by the client: an error answer, no task of the tree left, the images
    unchanged; the same images then restore fine."""
    cycle = RpcCycle(progs_built / "30_tree_basic", tmp_path)
    try:
        cycle.start(())
        cycle.wait_ready()
        cycle.dump(())
        before = {p.name: p.read_bytes() for p in cycle.imgdir.iterdir() if p.suffix == ".img"}
        images, work = _dir_fd(cycle.imgdir), _dir_fd(tmp_path / "work-dir")
        c = Client(tmp_path)
        resp, code = c.call(restore_request(images, work), answer=lambda s: s != refuse_at)
        os.close(images)
        os.close(work)
        assert code == 1 and not resp.success and refuse_at in resp.cr_errmsg
        _reap_all()
        assert not os.path.exists(f"/proc/{cycle.pid}")
        assert {p.name: p.read_bytes() for p in cycle.imgdir.iterdir() if p.suffix == ".img"} == before
        cycle.restore(())
        cycle.signal_and_wait(30, restored=True)
    finally:
        _kill_leftovers(cycle.pid)
