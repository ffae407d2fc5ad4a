"""Trees with a mount namespace of their own (engine/mounts.py): dumped, and rebuilt at restore
under the same root or under --root, with external mounts; and the failures."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from conftest import BIN_DIR, LXC_CR, NO_CR
from helpers import unshared

pytestmark = pytest.mark.skipif(NO_CR, reason="needs lxc-cr")


def host_mounts() -> list[str]:
    """Our mount table without ids (a restore must leave it exactly as it was)."""
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[2:]) for line in f)


# a mount namespace of its own, with its own /proc and IPC namespace (its mqueue mount)
MOUNT_NS = ("--mount", "--mount-proc", "--ipc")


def lxc_cr(*argv, ok=True):
    res = subprocess.run([str(LXC_CR), *map(str, argv)], capture_output=True, text=True)
    if ok:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def dump(root, images, *opts):
    lxc_cr("dump", "-t", root, "-D", images, "-o", "dump.log", "-v4", *opts)


def restore_and_check(images, root, log, tmp_path, *opts, outside=lambda: []):
    """Restore, check that the host's mounts did not change and what `outside` checks, then let
    the program check itself."""
    before = host_mounts()
    res = lxc_cr("restore", "-D", images, "-d", "--pidfile", tmp_path / "pid", "-o", "restore.log", "-v4", *opts,
                 ok=False)
    assert res.returncode == 0, res.stderr + (images / "restore.log").read_text()
    assert int((tmp_path / "pid").read_text()) == root
    assert os.readlink(f"/proc/{root}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert host_mounts() == before, "the restore changed the host's mounts"
    assert all(outside())
    os.kill(root, signal.SIGUSR1)
    _, status = os.waitpid(root, 0)
    text = log.read_text()
    assert os.waitstatus_to_exitcode(status) == 0 and "PASS" in text and "FAIL" not in text, text


def test_mount_tree_round_trip(tmp_path):
    """unshare -pfm --mount-proc: the root mount is the host's / (bound again from the same
    path), and the tree's own tmpfs (content, modes, owners, times), binds of a file and a
    directory, a read-only bind, proc, mqueue, cgroup2, a devpts instance with an open pty and
    shared/slave/private/unbindable mounts come back; the program checks them from inside."""
    base = tmp_path / "m"
    base.mkdir()
    with unshared(tmp_path, [BIN_DIR / "100_mount_tree", base], MOUNT_NS) as (unshare, root, log):
        images = tmp_path / "images"
        dump(root, images)
        unshare.wait()
        restore_and_check(images, root, log, tmp_path)


def make_rootfs(path):
    """A tiny root file system: busybox with a few applets, program 101, mountpoints, a marker."""
    for d in ("bin", "proc", "tmp", "dev", "mnt/etc", "ext", "etc"):
        (path / d).mkdir(parents=True)
    (path / "mnt/file").write_text("")
    (path / "marker").write_text("rootfs")
    (path / "etc/hostname").write_text("rootfs-etc")
    (path / "prog.log").write_text("")
    shutil.copy2("/bin/busybox", path / "bin/busybox")
    for applet in ("sh", "sleep", "cat", "ls", "mount"):
        (path / "bin" / applet).symlink_to("busybox")
    shutil.copy2(BIN_DIR / "101_mount_root", path / "bin/101_mount_root")


@pytest.mark.parametrize("how", ["key", "external", "auto"])
def test_root_given_with_root_and_an_external_mount(tmp_path, how):
    """A container-like tree (pivot_root into a busybox rootfs, proc, tmpfs /tmp and /dev, its
    own devpts, a bind of a file, a read-only bind of the rootfs's /etc, a busybox child) is
    restored with --root into a copy of the rootfs.  Its external mount is named on dump
    (--ext-mount-map /ext:extkey, or --external mnt[/ext]:extkey) and bound from another host
    directory on restore (extkey:DIR, mnt[extkey]:DIR), or found by --ext-mount-map auto and
    bound from where it was."""
    rootfs, ext = tmp_path / "rootfs", tmp_path / "ext"
    make_rootfs(rootfs)
    ext.mkdir()
    (ext / "file").write_text("external")
    log = rootfs / "prog.log"
    images = tmp_path / "images"
    with unshared(tmp_path, [rootfs / "bin/101_mount_root", rootfs, ext], ("--mount",), log=log) as (unshare, root, _):
        dump(root, images, *{"key": ["--ext-mount-map", "/ext:extkey"], "external": ["--external", "mnt[/ext]:extkey"],
                             "auto": ["--ext-mount-map", "auto"]}[how])
        unshare.wait()
    rootfs2, ext2 = tmp_path / "rootfs2", tmp_path / "ext2"
    make_rootfs(rootfs2)
    ext2.mkdir()
    (ext2 / "file").write_text("external")
    log2 = rootfs2 / "prog.log"
    log2.write_text(log.read_text())
    opts = {"key": ["--ext-mount-map", f"extkey:{ext2}"], "external": ["--external", f"mnt[extkey]:{ext2}"],
            "auto": []}[how]
    ext_file = ext / "file" if how == "auto" else ext2 / "file"
    restore_and_check(images, root, log2, tmp_path, "--root", rootfs2, *opts,
                      outside=lambda: [os.stat(f"/proc/{root}/root/{a}").st_ino == os.stat(b).st_ino
                                       for a, b in (("marker", rootfs2 / "marker"), ("ext/file", ext_file))])


def test_a_mount_of_an_unsupported_type_is_refused(tmp_path):
    """A ramfs in the tree: dump --check-only and dump name it and its mountpoint, the dump
    writes nothing and the tree keeps running."""
    point = tmp_path / "r"
    point.mkdir()
    script = f"mount -t ramfs lxccr-ramfs {point} && echo READY && exec setsid sleep 1000"
    with unshared(tmp_path, ["sh", "-c", script], MOUNT_NS) as (unshare, root, log):
        res = lxc_cr("dump", "-t", root, "--check-only", ok=False)
        assert res.returncode == 1 and f"mount at {point} (ramfs" in res.stdout + res.stderr, res.stdout + res.stderr
        res = lxc_cr("dump", "-t", root, "-D", tmp_path / "images", ok=False)
        assert res.returncode == 1 and f"mount at {point} (ramfs lxccr-ramfs): file system type ramfs" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not (tmp_path / "images/inventory.img").exists()
        assert os.readlink(f"/proc/{root}/exe").endswith("sleep") and unshare.poll() is None


def test_a_missing_external_key_or_a_fault_leaves_nothing(tmp_path):
    """Restores of the scenario 100 images that fail: without the mapping of an external key
    (one clear line, before anything is made), and with a fault injected in the middle of the
    mount rebuild, in the builder and in the root task.  None leaves a task or a mount on the
    host; a restore after them works."""
    base = tmp_path / "m"
    base.mkdir()
    (tmp_path / "hostdir").mkdir()
    with unshared(tmp_path, [BIN_DIR / "100_mount_tree", base], MOUNT_NS) as (unshare, root, log):
        images = tmp_path / "images"
        dump(root, images, "--ext-mount-map", f"{base}/t/bdir:bdirkey")
        unshare.wait()
        before = host_mounts()
        args = ["restore", "-D", images, "-d", "-o", "restore.log", "-v4"]
        res = lxc_cr(*args, ok=False)
        assert res.returncode == 1 and res.stderr.strip() == (f"lxc-cr: error: external mount at {base}/t/bdir: "
                                                              f"no --ext-mount-map bdirkey:PATH given"), res.stderr
        mapping = ["--ext-mount-map", f"bdirkey:{base}/src/dir"]
        for point in (f"{base}/t/p3", f"{base}/t/proc"):        # the builder's, the root task's
            res = subprocess.run([str(LXC_CR), *map(str, args + mapping)], capture_output=True, text=True,
                                 env={**os.environ, "LXC_CR_FAULT": f"mount:{point}"})
            assert res.returncode == 1 and "injected fault" in res.stderr, res.stderr
            assert not os.path.exists(f"/proc/{root}"), "a task was left behind"
            assert host_mounts() == before, "a failed restore left mounts behind"
        restore_and_check(images, root, log, tmp_path, *mapping)
