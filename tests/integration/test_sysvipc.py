"""SysV IPC in a tree's own IPC namespace: segments (attached and not), message queues,
semaphore sets and the IPC sysctls round-trip with their ids (140_sysvipc checks from inside);
bad images, a failing next_id write and a segment of the host's namespace are refused clearly."""
from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from conftest import LXC_CR, NO_CR
from helpers import unshared


def dump(tmp_path, root, unshare):
    images = tmp_path / "images"
    res = subprocess.run([LXC_CR, "dump", "-t", str(root), "-D", images, "-o", "dump.log", "-v4"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + (images / "dump.log").read_text()
    unshare.wait()
    return images


def restore(tmp_path, images, env=None):
    return subprocess.run([LXC_CR, "restore", "-D", images, "-d", "--pidfile", tmp_path / "pid",
                           "-o", "restore.log", "-v4"], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def test_140_sysvipc_round_trip(tmp_path):
    with unshared(tmp_path, "140_sysvipc", ("--ipc",)) as (unshare, root, log):
        if not NO_CR:
            images = dump(tmp_path, root, unshare)
            res = restore(tmp_path, images)
            assert res.returncode == 0, res.stderr + (images / "restore.log").read_text()
            assert int((tmp_path / "pid").read_text()) == root
        os.kill(root, signal.SIGUSR1)
        if NO_CR:
            unshare.wait(timeout=30)
        else:
            _, status = os.waitpid(root, 0)
            assert os.waitstatus_to_exitcode(status) == 0, log.read_text()
        assert "PASS" in log.read_text() and "FAIL" not in log.read_text(), log.read_text()


def rewrite(images, change):
    """Decode sysvipc.img, change() it, write it back (framed and checksummed as the tool does)."""
    from lxc_cr.engine.images import ImageDir
    from lxc_cr.engine.sysvipc import IMAGE, message
    d = ImageDir.for_restore(str(images))
    msg = d.read(IMAGE, message())
    change(msg)
    os.unlink(images / IMAGE)
    d.write(IMAGE, msg)
    d.close()


@pytest.mark.parametrize("change, what", [
    (lambda m: m.sem[0].values.append(40000), "bad semaphore count or value"),
    (lambda m: setattr(m.shm[0], "data", "../../etc/passwd"), "bad size or data file"),
    (lambda m: m.sysctls.add(name="kernel/core_pattern", value="1"), "bad sysctl"),
    (lambda m: setattr(m.msg[0].perm, "id", m.msg[1].perm.id), "bad or repeated id"),
])
def test_corrupted_ipc_image_refused(tmp_path, change, what):
    if NO_CR:
        pytest.skip("needs lxc-cr")
    with unshared(tmp_path, "140_sysvipc", ("--ipc",)) as (unshare, root, log):
        images = dump(tmp_path, root, unshare)
        rewrite(images, change)
        res = restore(tmp_path, images)
        assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
        assert "sysvipc.img" in res.stderr and what in res.stderr, res.stderr
        assert not os.path.exists(f"/proc/{root}")


def test_next_id_failure_is_clear_and_leaves_nothing(tmp_path):
    if NO_CR:
        pytest.skip("needs lxc-cr")
    with unshared(tmp_path, "140_sysvipc", ("--ipc",)) as (unshare, root, log):
        images = dump(tmp_path, root, unshare)
        res = restore(tmp_path, images, {"LXC_CR_FAULT": "sysv-next-id"})
        assert res.returncode == 1 and "sysv-next-id" in res.stderr, res.stderr
        assert not os.path.exists(f"/proc/{root}")
        res = restore(tmp_path, images)          # the images are intact
        assert res.returncode == 0, res.stderr
        os.kill(root, signal.SIGUSR1)
        _, status = os.waitpid(root, 0)
        assert os.waitstatus_to_exitcode(status) == 0, log.read_text()


def test_host_segment_attached_is_refused(tmp_path):
    """Without an IPC namespace of its own the segment is the host's: refused by id, tree untouched."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    with unshared(tmp_path, "141_sysvipc_host_ns") as (unshare, root, log):
        maps = open(f"/proc/{root}/maps").read()
        shmid = re.search(r" (\d+)\s+/SYSV[0-9a-f]{8} \(deleted\)", maps).group(1)
        res = subprocess.run([LXC_CR, "dump", "-t", str(root), "-D", tmp_path / "d"], capture_output=True,
                             text=True)
        assert res.returncode == 1 and f"SysV shared memory segment {shmid} " in res.stderr, res.stderr
        assert "IPC namespace of its own" in res.stderr
        os.kill(root, signal.SIGUSR1)
        unshare.wait(timeout=30)
        assert "PASS" in log.read_text()


@pytest.mark.parametrize("restored", [False, True], ids=["leave-running", "restored"])
def test_142_segments_a_dump_must_not_lose(tmp_path, restored):
    """142_sysvipc_removed: a detached segment survives a --leave-running dump with
    kernel.shm_rmid_forced on, and comes back after a restore; a segment removed while
    attached (SHM_DEST) comes back shared by both its attachments, still removed."""
    if NO_CR and not restored:
        pytest.skip("needs lxc-cr")
    with unshared(tmp_path, "142_sysvipc_removed", ("--ipc",)) as (unshare, root, log):
        if not NO_CR:
            images = tmp_path / "images"
            res = subprocess.run([LXC_CR, "dump", "-t", str(root), "-D", images, "-o", "dump.log", "-v4"]
                                 + ([] if restored else ["--leave-running"]), capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
        if restored and not NO_CR:
            unshare.wait()
            res = restore(tmp_path, images)
            assert res.returncode == 0, res.stderr + (images / "restore.log").read_text()
        os.kill(root, signal.SIGUSR1)
        if restored and not NO_CR:
            _, status = os.waitpid(root, 0)
            assert os.waitstatus_to_exitcode(status) == 0, log.read_text()
        else:
            unshare.wait(timeout=30)
        assert "PASS" in log.read_text() and "FAIL" not in log.read_text(), log.read_text()
