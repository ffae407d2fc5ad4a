"""Sockets and the data in flight inside them: unix (stream, datagram, seqpacket, listeners,
files in flight, peers outside the tree) and inet (TCP listening and established, UDP).

Most scenarios go through conftest's run_cycle; the ones that need a peer outside the
tree (this test process), an expected refusal, or a look at the original after a
--leave-running dump drive the steps themselves with Cycle.
"""

import os
import socket
import subprocess
import threading

import pytest

from conftest import EXIT_TIMEOUT, LXC_CR, NO_CR, Cycle, _kill_leftovers

M64 = (1 << 64) - 1


def _mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def pattern(seed, n, off=0):
    """Bytes off..off+n of the programs' pattern `seed` (common.h: cr_fill_off)."""
    first, last = off // 8, (off + n + 7) // 8
    words = b"".join((_mix64(seed ^ ((w * 0xD6E8FEB86659FD93) & M64))).to_bytes(8, "little")
                     for w in range(first, last))
    return words[off - first * 8:off - first * 8 + n]


@pytest.fixture(scope="module", autouse=True)
def no_network_lock_left():
    """A failed TCP restore leaves its connection locked (as it should): not past these tests."""
    yield
    if not NO_CR and _nft_table_exists():
        subprocess.run(["nft", "delete", "table", "inet", "lxc_cr"], capture_output=True)
        pytest.fail("the nftables table inet lxc_cr was left behind", pytrace=False)


def _nft_table_exists():
    return subprocess.run(["nft", "list", "table", "inet", "lxc_cr"], capture_output=True).returncode == 0


def _log_value(f, prefix):
    """The integer after `prefix` on the program's "# prefix N" line."""
    line = next(l for l in f.c.log_text().splitlines() if l.startswith(f"# {prefix} "))
    return int(line.split()[2])


class Flow:
    """One program driven step by step: conftest's Cycle, without its fixed sequence."""

    def __init__(self, progs_built, tmp_path, prog, args=()):
        self.c = Cycle(progs_built / prog, tmp_path)
        self.args = tuple(str(a) for a in args)

    def __enter__(self):
        self.c.start(self.args)
        self.c.wait_ready()
        return self

    def __exit__(self, *exc):
        _kill_leftovers(self.c.pid)
        if self.c.proc.returncode is None:
            try:
                self.c.proc.wait(timeout=1)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass

    @property
    def pid(self):
        return self.c.pid

    def try_dump(self, *opts):
        """lxc-cr dump that may fail: returns the finished process."""
        return subprocess.run([str(LXC_CR), "dump", "-t", str(self.pid), "-D", str(self.c.imgdir), *opts,
                               "-o", "dump.log", "-v4"], capture_output=True, text=True, timeout=120)

    def try_restore(self, *opts):
        return subprocess.run([str(LXC_CR), "restore", "-D", str(self.c.imgdir), "-d", *opts,
                               "-o", "restore-failed.log", "-v4"], capture_output=True, text=True, timeout=120)

    def cycle(self, dump_opts=(), restore_opts=()):
        if not NO_CR:
            self.c.dump(tuple(dump_opts))
            self.c.restore(tuple(restore_opts))

    def finish(self, restored=True):
        """Signal the program and require its PASS."""
        self.c.signal_and_wait(EXIT_TIMEOUT, restored=restored and not NO_CR)
        return self.c.log_text()

    def refused(self, result, *words):
        assert result.returncode != 0, f"lxc-cr should have refused: {result.stdout}{result.stderr}"
        for w in words:
            assert w in result.stderr, f"{w!r} not in the refusal: {result.stderr}"


def test_70_unix_stream(run_cycle):
    run_cycle("70_unix_stream")


def test_71_unix_dgram(run_cycle):
    run_cycle("71_unix_dgram")


def test_72_unix_seqpacket(run_cycle):
    run_cycle("72_unix_seqpacket")


def test_73_unix_listener_with_waiting_connections(run_cycle):
    run_cycle("73_unix_listener")


def test_74_unix_files_in_flight(run_cycle):
    run_cycle("74_unix_scm_rights")


def test_185_unix_stream_files_stay_on_their_segment(run_cycle):
    run_cycle("185_unix_stream_fd_segments")


# ---- --leave-running: the original's queues are untouched


@pytest.mark.parametrize("prog,restore_after", [("70_unix_stream", True), ("71_unix_dgram", True),
                                                ("73_unix_listener", True), ("74_unix_scm_rights", False),
                                                ("185_unix_stream_fd_segments", False)])
def test_75_leave_running_leaves_queues(progs_built, tmp_path, prog, restore_after):
    """The original reads every queue intact after a --leave-running dump; then the images restore
    (74 and 185 remove their files when done, so their images cannot be restored after they ran)."""
    with Flow(progs_built, tmp_path, prog) as f:
        if not NO_CR:
            f.c.lxc_cr("dump", ["-t", str(f.pid), "-D", str(f.c.imgdir), "--leave-running"], "dump.log")
        f.finish(restored=False)
        if NO_CR or not restore_after:
            return
        f.c.restore(())
        log = f.finish(restored=True)
        assert log.splitlines().count("PASS") == 2, log


# ---- unix peers outside the tree (this test process)


def _external_servers(tmp_path):
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(str(tmp_path / "ext-dgram.sock"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "ext-stream.sock"))
    listener.listen(1)
    return dgram, listener


def _feed_external(f, dgram, listener):
    conn, _ = listener.accept()
    conn.sendall(pattern(0x76, 1000))
    dgram.sendto(b"to-client", b"\0lxcr76-%d" % f.pid)
    return conn


def test_76_external_unix_peer_refused(progs_built, tmp_path):
    dgram, listener = _external_servers(tmp_path)
    with dgram, listener, Flow(progs_built, tmp_path, "76_unix_ext_peer",
                               [tmp_path / "ext-dgram.sock", tmp_path / "ext-stream.sock"]) as f:
        conn = _feed_external(f, dgram, listener)
        if not NO_CR:
            f.refused(f.try_dump(), "--ext-unix-sk", f"process {f.pid} fd ")
        log = f.finish(restored=False)           # the refused dump left everything as it was
        assert "# stream: open" in log
        assert dgram.recv(100) == b"hello-1" and dgram.recv(100) == b"hello-2"
        conn.close()


def test_76b_external_unix_peer_allowed(progs_built, tmp_path):
    """--ext-unix-sk: the datagram socket is connected again to the same server (which hears it
    by its name), the stream socket reads what the server had sent, then EOF."""
    dgram, listener = _external_servers(tmp_path)
    with dgram, listener, Flow(progs_built, tmp_path, "76_unix_ext_peer",
                               [tmp_path / "ext-dgram.sock", tmp_path / "ext-stream.sock"]) as f:
        conn = _feed_external(f, dgram, listener)
        if not NO_CR:
            f.c.dump(("--ext-unix-sk",))
            f.refused(f.try_restore(), "--ext-unix-sk")
            f.c.restore(("--ext-unix-sk",))
        log = f.finish()
        assert ("# stream: open" if NO_CR else "# stream: EOF") in log
        assert dgram.recvfrom(100) == (b"hello-1", b"\0lxcr76-%d" % f.pid)
        assert dgram.recvfrom(100) == (b"hello-2", b"\0lxcr76-%d" % f.pid)
        conn.close()


# ---- TCP and UDP


def test_77_tcp_listeners_and_unconnected(progs_built, tmp_path):
    """Restored listeners accept: first a connection this process makes after the restore."""
    with Flow(progs_built, tmp_path, "77_inet_tcp_listen", ["outside"]) as f:
        f.cycle()
        port = _log_value(f, "port")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"from-outside")
            f.finish()
            assert s.recv(2) == b"ok"


def test_78_udp(run_cycle):
    run_cycle("78_inet_udp")


def test_79_tcp_established_inside(run_cycle):
    run_cycle("79_inet_tcp_inside", dump_opts=["--tcp-established"], restore_opts=["--tcp-established"])


def test_79b_tcp_established_refused(progs_built, tmp_path):
    """Refused without --tcp-established, and listed by --check-only; nothing changed for the tree."""
    with Flow(progs_built, tmp_path, "79_inet_tcp_inside") as f:
        if not NO_CR:
            f.refused(f.try_dump(), "--tcp-established", "established", f"process {f.pid} fd ")
            check = subprocess.run([str(LXC_CR), "dump", "--check-only", "-t", str(f.pid)], capture_output=True,
                                   text=True)
            assert check.returncode == 1 and check.stdout.count("use --tcp-established") == 4, check.stdout
            check = subprocess.run([str(LXC_CR), "dump", "--check-only", "--tcp-established", "-t", str(f.pid)],
                                   capture_output=True, text=True)
            assert check.returncode == 0, check.stdout
        f.finish(restored=False)


def test_79c_tcp_established_leave_running(progs_built, tmp_path):
    """--leave-running: the connections go through repair mode and come out of it intact."""
    with Flow(progs_built, tmp_path, "79_inet_tcp_inside") as f:
        if not NO_CR:
            f.c.lxc_cr("dump", ["-t", str(f.pid), "-D", str(f.c.imgdir), "--leave-running",
                                "--tcp-established"], "dump.log")
            assert not _nft_table_exists()
        f.finish(restored=False)


def test_80_tcp_established_external_peer(progs_built, tmp_path):
    """The other end is this process: it reads everything the program had queued, and answers."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)   # the program's writes stay queued
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = {}

    def serve():
        conn, _ = server.accept()
        accepted["conn"] = conn
        conn.sendall(pattern(0x80B, 20000))

    feeder = threading.Thread(target=serve)
    feeder.start()
    with server, Flow(progs_built, tmp_path, "80_inet_tcp_external", [server.getsockname()[1]]) as f:
        feeder.join(10)
        conn = accepted["conn"]
        sent = _log_value(f, "sent")
        f.cycle(["--tcp-established"], ["--tcp-established"])
        if not NO_CR:
            assert not _nft_table_exists(), "the network lock is still there after the restore"
        result = {}

        def read_all():
            conn.settimeout(30)
            data = bytearray()
            while len(data) < sent + 4:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
            result["data"] = bytes(data)
            conn.sendall(b"OK")

        reader = threading.Thread(target=read_all)
        reader.start()
        f.finish()
        reader.join(30)
        data = result.get("data", b"")
        assert len(data) == sent + 4, f"the server read {len(data)} bytes, expected {sent + 4}"
        assert data[:sent] == pattern(0x80A, sent), "the program's bytes came with a difference"
        assert data[sent:] == b"DONE"
        conn.close()


def test_81_tcp_accept_queue_refused(progs_built, tmp_path):
    with Flow(progs_built, tmp_path, "81_inet_tcp_accept_queue") as f:
        port = _log_value(f, "port")
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            if not NO_CR:
                f.refused(f.try_dump(), "--skip-in-flight", "waiting to be accepted", f"process {f.pid} fd ")
            assert "# accepted 2" in f.finish(restored=False)


def test_81b_tcp_accept_queue_skipped(progs_built, tmp_path):
    """--skip-in-flight: the waiting connection is left out (its client gets a reset)."""
    with Flow(progs_built, tmp_path, "81_inet_tcp_accept_queue") as f:
        port = _log_value(f, "port")
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            f.cycle(["--skip-in-flight"])
            assert ("# accepted 2" if NO_CR else "# accepted 1") in f.finish()


@pytest.mark.parametrize("family", ["netlink", "packet"])
def test_82_unsupported_socket_refused(progs_built, tmp_path, family):
    with Flow(progs_built, tmp_path, "82_sock_unsupported", [family]) as f:
        fd = _log_value(f, "fd")
        if not NO_CR:
            f.refused(f.try_dump(), f"process {f.pid} fd {fd}: {family} socket is not supported")
        f.finish(restored=False)


# ---- datagrams queued in UDP sockets


def test_180_udp_queued_datagrams(run_cycle):
    run_cycle("180_udp_queue")


def test_180b_udp_queue_leave_running(progs_built, tmp_path):
    """A --leave-running dump leaves every UDP queue (and peek offset) as it was; the images
    then restore the same queues."""
    with Flow(progs_built, tmp_path, "180_udp_queue") as f:
        if not NO_CR:
            f.c.lxc_cr("dump", ["-t", str(f.pid), "-D", str(f.c.imgdir), "--leave-running"], "dump.log")
        f.finish(restored=False)
        if NO_CR:
            return
        f.c.restore(())
        log = f.finish(restored=True)
        assert log.splitlines().count("PASS") == 2, log


# ---- unix connections waiting to be accepted that hold data


def test_181_unix_waiting_connections_with_data(run_cycle):
    run_cycle("181_unix_waiting_data")


def test_181b_unix_waiting_data_leave_running_refused(progs_built, tmp_path):
    """Such data can only be read by accepting the connection: a --leave-running dump refuses,
    naming the socket, the process and the fd, and the program still finds everything."""
    with Flow(progs_built, tmp_path, "181_unix_waiting_data") as f:
        if NO_CR:
            return
        f.refused(f.try_dump("--leave-running"), "unix stream socket @lxcr181-", f"process {f.pid} fd ",
                  "waiting to be accepted holds data", "--leave-running")
        f.finish(restored=False)


# ---- half-closed TCP connections


def test_183_tcp_half_closed(run_cycle):
    run_cycle("183_tcp_half_closed", dump_opts=["--tcp-established"], restore_opts=["--tcp-established"])


def test_183b_tcp_half_closed_leave_running(progs_built, tmp_path):
    """--leave-running: both half-closed ends go through repair mode and come out of it intact."""
    with Flow(progs_built, tmp_path, "183_tcp_half_closed") as f:
        if not NO_CR:
            f.c.lxc_cr("dump", ["-t", str(f.pid), "-D", str(f.c.imgdir), "--leave-running",
                                "--tcp-established"], "dump.log")
            assert not _nft_table_exists()
        f.finish(restored=False)


def test_183c_tcp_half_closed_refused_without_option(progs_built, tmp_path):
    with Flow(progs_built, tmp_path, "183_tcp_half_closed") as f:
        if not NO_CR:
            f.refused(f.try_dump(), "(FIN_WAIT2)", "--tcp-established", f"process {f.pid} fd ")
        f.finish(restored=False)


def test_180c_udp_damaged_datagram_image_refused(progs_built, tmp_path):
    """A UDP datagram image that lost bytes fails the restore with one line naming it, before
    anything runs; the images are left as they were."""
    with Flow(progs_built, tmp_path, "180_udp_queue") as f:
        if NO_CR:
            return
        f.c.dump(())
        image = next(p for p in f.c.imgdir.iterdir() if p.name.startswith("udp-"))
        os.truncate(image, image.stat().st_size - 1)
        before = sorted((p.name, p.stat().st_size) for p in f.c.imgdir.iterdir() if p.suffix == ".img")
        res = f.try_restore()
        assert res.returncode != 0, res
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and "IP socket" in lines[0] and image.name in lines[0], res.stderr
        assert before == sorted((p.name, p.stat().st_size) for p in f.c.imgdir.iterdir() if p.suffix == ".img")


# ---- TCP connections caught while closing, a FIN of ours not yet acknowledged


def test_186_tcp_closing_states(run_cycle):
    run_cycle("186_tcp_closing_states", dump_opts=["--tcp-established"], restore_opts=["--tcp-established"])


def test_186b_tcp_closing_states_leave_running(progs_built, tmp_path):
    """--leave-running: the closing connections go through repair mode and come out of it as they were."""
    with Flow(progs_built, tmp_path, "186_tcp_closing_states") as f:
        if not NO_CR:
            f.c.lxc_cr("dump", ["-t", str(f.pid), "-D", str(f.c.imgdir), "--leave-running",
                                "--tcp-established"], "dump.log")
            assert not _nft_table_exists()
        f.finish(restored=False)


def test_186c_tcp_closing_states_refused(progs_built, tmp_path):
    """Without --tcp-established each closing connection is refused by state, process and fd."""
    with Flow(progs_built, tmp_path, "186_tcp_closing_states") as f:
        if not NO_CR:
            f.refused(f.try_dump(), "--tcp-established", f"process {f.pid} fd ")
            check = subprocess.run([str(LXC_CR), "dump", "--check-only", "-t", str(f.pid)], capture_output=True,
                                   text=True)
            for state in ("CLOSE_WAIT", "FIN_WAIT1", "FIN_WAIT2", "LAST_ACK", "CLOSING"):
                assert f"({state}); use --tcp-established" in check.stdout, check.stdout
        f.finish(restored=False)
