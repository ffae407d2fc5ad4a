"""Cgroup properties and re-rooting: a tree in cgroups with limits, restored below another
--cgroup-root with --manage-cgroups=full, finds the same limits there (checked from inside
by 150_cgroup_props); a restore that fails after making cgroups leaves none behind."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import LXC_CR, NO_CR
from helpers import remove_cgroup
from test_cgroups import cgroups, checked, dump_and_remove, reap_orphans, start_inside  # noqa: F401  (cgroups: a fixture)

HIERARCHIES = ("pids", "memory", "cpu")
LIMITS = {"pids": ("pids.max", "57"), "memory": ("memory.limit_in_bytes", str(64 << 20)),
          "cpu": ("cpu.shares", "512")}
SUB_PIDS_MAX = "9"


def cgdir(hierarchy, name):
    return f"/sys/fs/cgroup/{hierarchy}/{name}"


@pytest.fixture
def names(tmp_path):
    """(FROM, TO): cgroup names of this test; FROM exists with the limits, TO exists in pids only
    (as LXC makes its new payload cgroup before a restore)."""
    tag = f"lxccr-ipc-{os.getpid()}-{tmp_path.name[-10:]}"
    src, dst = f"{tag}-from", f"{tag}-to"
    for h in HIERARCHIES:
        if not os.path.isdir(f"/sys/fs/cgroup/{h}"):
            pytest.skip(f"no cgroup v1 {h} hierarchy here")
    try:
        for h in HIERARCHIES:
            os.mkdir(cgdir(h, src))
            name, value = LIMITS[h]
            with open(os.path.join(cgdir(h, src), name), "w") as f:
                f.write(value)
        os.mkdir(cgdir("pids", dst))
        yield src, dst
    finally:
        for h in HIERARCHIES:
            for n in (src, dst):
                remove_cgroup(cgdir(h, n))


def start(tmp_path, src, dst):
    args = [src, dst if not NO_CR else src, LIMITS["pids"][1], LIMITS["memory"][1], LIMITS["cpu"][1],
            SUB_PIDS_MAX]
    return start_inside(tmp_path, [cgdir(h, src) for h in HIERARCHIES], "150_cgroup_props", args)


def dump(tmp_path, p, src):
    images = tmp_path / "images"
    res = subprocess.run([LXC_CR, "dump", "-t", str(p.pid), "-D", images, "--manage-cgroups=full"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    p.wait()
    reap_orphans()
    for h in HIERARCHIES:               # the limits must come from the images
        remove_cgroup(cgdir(h, src))
    return images


def restore_argv(images, dst):
    return [LXC_CR, "restore", "-D", images, "-d", "--manage-cgroups=full",
            *[arg for h in HIERARCHIES for arg in ("--cgroup-root", f"{h}:/{dst}")]]


def restore_over_rpc(tmp_path, images, dst):
    """The same restore as a runc client asks it: cg_root entries, manage_cgroups_mode full."""
    from lxc_cr import rpc_pb2 as pb
    from test_rpc import Client, _dir_fd, restore_request
    images_fd, work_fd = _dir_fd(images), _dir_fd(tmp_path / "work")
    try:
        req = restore_request(images_fd, work_fd, manage_cgroups_mode=pb.CG_FULL,
                              cg_root=[pb.CgroupRoot(ctrl=h, path=f"/{dst}") for h in HIERARCHIES])
        resp, code = Client(tmp_path).call(req)
    finally:
        os.close(images_fd)
        os.close(work_fd)
    assert code == 0 and resp.success, (resp, (tmp_path / "work" / "restore.log").read_text())


@pytest.mark.parametrize("via", ["cli", "rpc"])
def test_150_limits_hold_under_another_root(tmp_path, names, via):
    src, dst = names
    p, log = start(tmp_path, src, dst)
    with checked(p, log):
        if not NO_CR and via == "rpc":
            restore_over_rpc(tmp_path, dump(tmp_path, p, src), dst)
        elif not NO_CR:
            images = dump(tmp_path, p, src)
            res = subprocess.run(restore_argv(images, dst), capture_output=True, text=True)
            assert res.returncode == 0, res.stderr + (images / "restore.log").read_text()


def test_failed_restore_leaves_no_cgroup(tmp_path, names):
    if NO_CR:
        pytest.skip("needs lxc-cr")
    src, dst = names
    p, log = start(tmp_path, src, dst)
    images = dump(tmp_path, p, src)
    res = subprocess.run(restore_argv(images, dst), capture_output=True, text=True,
                         env=dict(os.environ, LXC_CR_FAULT="cgroups"))
    assert res.returncode == 1 and "cgroups" in res.stderr, res.stderr
    # the one LXC-style root that existed before stays, without anything below it; nothing else is left
    assert os.listdir(cgdir("pids", dst)) and not [e for e in os.scandir(cgdir("pids", dst)) if e.is_dir()]
    assert not any(os.path.exists(cgdir(h, dst)) for h in HIERARCHIES if h != "pids")
    assert not os.path.exists(f"/proc/{p.pid}")


def test_missing_cgroup_refused_in_mode_none(tmp_path, names):
    if NO_CR:
        pytest.skip("needs lxc-cr")
    src, dst = names
    p, log = start(tmp_path, src, dst)
    images = dump(tmp_path, p, src)
    argv = [a if a != "--manage-cgroups=full" else "--manage-cgroups=none" for a in restore_argv(images, dst)]
    res = subprocess.run(argv, capture_output=True, text=True)
    assert res.returncode == 1, res.stderr
    assert "does not exist (--manage-cgroups=none" in res.stderr, res.stderr
    assert not os.path.exists(cgdir("memory", dst)) and not os.path.exists(f"/proc/{p.pid}")


def test_corrupted_cgroup_image_refused(tmp_path, names):
    if NO_CR:
        pytest.skip("needs lxc-cr")
    src, dst = names
    p, log = start(tmp_path, src, dst)
    images = dump(tmp_path, p, src)
    from lxc_cr.engine.images import ImageDir
    from lxc_cr.engine.proto.cgroups_pb2 import Cgroups
    d = ImageDir.for_restore(str(images))
    msg = d.read("cgroups.img", Cgroups)
    d.close()
    next(h for h in msg.hierarchies if h.dirs).dirs[0].props.add(name="memory.limit_in_bytes",
                                                                  value="1\necho bad")
    os.unlink(images / "cgroups.img")
    d = ImageDir(str(images), os.open(images, os.O_RDONLY | os.O_DIRECTORY))
    d.write("cgroups.img", msg)
    d.close()
    res = subprocess.run(restore_argv(images, dst), capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
    assert "cgroups.img" in res.stderr and "memory.limit_in_bytes" in res.stderr, res.stderr
    assert not os.path.exists(cgdir("memory", dst))


def test_strict_refuses_an_existing_root(tmp_path, names):
    """strict makes the tree's cgroups itself: a new root that exists already is refused,
    and nothing is left behind."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    src, dst = names
    p, log = start(tmp_path, src, dst)
    images = dump(tmp_path, p, src)
    argv = [a if a != "--manage-cgroups=full" else "--manage-cgroups=strict" for a in restore_argv(images, dst)]
    res = subprocess.run(argv, capture_output=True, text=True)
    assert res.returncode == 1 and f"{cgdir('pids', dst)} exists already (--manage-cgroups=strict)" in res.stderr, \
        res.stderr
    assert not any(os.path.exists(cgdir(h, dst)) for h in HIERARCHIES if h != "pids")
    assert not os.path.exists(f"/proc/{p.pid}")


def test_strict_leaves_the_restorers_own_cgroups_alone(tmp_path, cgroups):
    """A tree sharing a cgroup of the restorer's (here the memory cgroup this session runs in)
    inherits it: strict does not count it as a cgroup that should not exist."""
    if NO_CR:
        pytest.skip("needs lxc-cr")
    own = dict(line.split(":", 2)[1:] for line in open("/proc/self/cgroup").read().splitlines())
    if own.get("memory", "/") == "/":
        pytest.skip("this session is in the memory hierarchy's root cgroup")
    p, log = start_inside(tmp_path, cgroups)
    with checked(p, log):
        images = dump_and_remove(tmp_path, p, cgroups)
        res = subprocess.run([LXC_CR, "restore", "-D", images, "-d", "--manage-cgroups=strict"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert own["memory"] in open(f"/proc/{p.pid}/cgroup").read()
