"""Namespaces a restored tree joins instead of making: `--join-ns NS:PID|PATH` (RPC
`join_ns {ns, ns_file}`).

runc sends join_ns at restore for each IPC, UTS, mount, user or time namespace a container
was given by path in config.json, crun for time, IPC and UTS; podman does it to restore a
container into a pod, whose IPC and UTS namespaces its infra container holds.  Nothing is
needed at dump: the tree's namespace is dumped as one of its own (engine/namespaces.py,
engine/sysvipc.py, engine/netns.py), also what other processes sharing it put there.

At restore such a namespace exists and belongs to someone else: nothing of the dumped copy is
made in it and nothing in it is set or removed, so a failed restore leaves it exactly as it
was, and the tree sees the namespace as it is now:
- uts: the dumped host and domain names are not set;
- ipc: the dumped SysV objects and IPC sysctls are not made; a task's attachment of a SysV
  segment attaches the joined namespace's segment with the dumped id, which must be there
  with the dumped size (checked before any task is made);
- net: no device, address, route, sysctl or ruleset is made; the tree's sockets are made in
  the joined namespace.  The orchestrator enters it the way it enters an external network
  namespace (engine/extns.py join_net); IPC and UTS are entered next to it, so the tree is
  forked in them and the files it opens (POSIX queues) are opened there.
- mnt: no mount of the images is made (nor --root, nor --external mnt[]); the tree's paths
  (its files, executables, mappings, cwd and root) are those of the joined namespace.  The
  orchestrator stays in its own and opens the tasks' files beneath the joined namespace's root
  (mounts.MountNs, as for a namespace made from the images); the root task enters it before
  it forks, so every task lives in it.
Other kinds (user, time, pid, cgroup) are refused with one line naming the option and the
namespace, as is a target that is no namespace of the named kind, before anything is made.
The target is a PID (its /proc/PID/ns/NS) or the absolute path of a namespace file.
"""
from __future__ import annotations

import logging
import os
import re
import struct
from typing import NamedTuple

from . import kernel as k
from .errors import PlanError, UnsupportedError
from .extns import NS_GET_NSTYPE, join_net
from .mounts import MountNs
from .namespaces import FLAGS, visiting

log = logging.getLogger("lxc_cr.joinns")

KINDS = {kind: FLAGS[kind] for kind in ("ipc", "uts", "net", "mnt")}
# every namespace type by its clone flag, to say what a wrong file is
NAMES = {**{flag: kind for kind, flag in FLAGS.items()}, k.CLONE_NEWPID: "pid", 0x10000000: "user", 0x80: "time"}
SPEC = re.compile(r"([a-z]+):([^,]+)(?:,(.*))?")


class JoinNs(NamedTuple):
    """One namespace to join: kind, target (a PID or a path), and how the caller spelled it
    (for error lines)."""
    kind: str
    target: str
    spelling: str

    @property
    def path(self) -> str:
        return f"/proc/{self.target}/ns/{self.kind}" if self.target.isdigit() else self.target


# --- the plan ------------------------------------------------------------------------------------

def from_cli(specs) -> tuple[JoinNs, ...]:
    """--join-ns NS:PID|PATH[,EXTRA] (CRIU's spelling), checked."""
    out = []
    for spec in specs:
        m = SPEC.fullmatch(spec)
        if not m:
            raise PlanError(f"--join-ns {spec}: expected NS:PID or NS:PATH (e.g. ipc:/proc/123/ns/ipc, uts:123)")
        out.append(entry(m.group(1), m.group(2), m.group(3) or "", f"--join-ns {spec}"))
    return _once_each(out)


def from_rpc(entries) -> tuple[JoinNs, ...]:
    """RPC join_ns {ns, ns_file, extra_opt}, checked as the command line's."""
    return _once_each([entry(j.ns, j.ns_file, j.extra_opt, f"opts.join_ns {j.ns}:{j.ns_file}") for j in entries])


def entry(kind: str, target: str, extra: str, spelling: str) -> JoinNs:
    if kind not in KINDS:
        raise UnsupportedError(f"{spelling}: joining a {kind or 'nameless'} namespace at restore is not "
                               f"supported (only {', '.join(KINDS)})")
    if extra:
        raise PlanError(f"{spelling}: extra options ({extra!r}) exist only for a user namespace")
    if not (target.isdigit() and int(target) > 0 or target.startswith("/")):
        raise PlanError(f"{spelling}: the namespace must be given as a PID or an absolute path")
    return JoinNs(kind, target, spelling)


def _once_each(entries: list[JoinNs]) -> tuple[JoinNs, ...]:
    kinds = [e.kind for e in entries]
    for e in entries:
        if kinds.count(e.kind) > 1:
            raise PlanError(f"{e.spelling}: the {e.kind} namespace is to be joined more than once")
    return tuple(entries)


# --- restore -------------------------------------------------------------------------------------

class Joined:
    """The plan's namespaces, opened and checked (kind -> fd) before anything is made."""

    def __init__(self, entries, inventory, net_devices=()):
        self.fds: dict[str, int] = {}
        try:
            for e in entries:
                self.fds[e.kind] = _open(e)
                _check_fits(e, inventory, net_devices)
        except BaseException:
            self.close()
            raise
        self.entries = {e.kind: e for e in entries}

    def has(self, kind: str) -> bool:
        return kind in self.entries

    def flags(self) -> int:
        """The clone flags of the joined kinds: the root is not given new ones of those."""
        flags = 0
        for kind in self.entries:
            flags |= KINDS[kind]
        return flags

    def mount_ns(self) -> "JoinedMountNs | None":
        """The joined mount namespace, for the restore to use as one made from the images; the
        orchestrator must be single-threaded (it visits the namespace for its root)."""
        if "mnt" not in self.fds:
            return None
        fd = self.fds.pop("mnt")
        try:
            with visiting(self.entries["mnt"].path, "mnt"):
                root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            os.close(fd)
            raise
        return JoinedMountNs(fd, root)

    def enter(self, external: dict[str, int]) -> None:
        """The orchestrator enters the joined namespaces but mnt (the root task enters that one:
        mount_ns), and the external network namespace (engine/extns.py), before any file of the
        tree is opened; the fds are closed then."""
        for e in self.entries.values():
            log.info("%s: joined; its contents in the images are not made", e.spelling)
        nets = {"net": self.fds["net"]} if "net" in self.fds else {}
        join_net({**external, **nets})
        for kind, fd in self.fds.items():
            if kind in ("ipc", "uts"):
                k.syscall("setns", fd, KINDS[kind])
        self.close()

    def check_attachments(self, mms) -> None:
        """In the joined IPC namespace (entered): every SysV segment a task attaches must be
        there with the dumped size, as the task will attach it."""
        if not self.has("ipc"):
            return
        from .proto import images_pb2 as pb
        for pid, mm in mms.items():
            for v in mm.vmas:
                if v.kind == pb.Vma.SYSV_SHM:
                    _check_segment(self.entries["ipc"], pid, v)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


class JoinedMountNs(MountNs):
    """A joined mount namespace: the tasks' paths resolve beneath its root, and the root task
    enters it; nothing of the images is made in it."""

    def __init__(self, ns_fd: int, root_fd: int):
        super().__init__(None, set(), ns_fd, root_fd, {})

    def enter(self, images) -> None:
        k.syscall("setns", self.ns_fd, k.CLONE_NEWNS)


def _open(e: JoinNs) -> int:
    try:
        fd = os.open(e.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise PlanError(f"{e.spelling}: cannot open {e.path}: {err.strerror}") from None
    try:
        nstype = k.ioctl_arg(fd, NS_GET_NSTYPE, 0, "NS_GET_NSTYPE")
    except OSError:
        nstype = None                   # not a namespace file at all
    if nstype != KINDS[e.kind]:
        os.close(fd)
        what = f"a {NAMES[nstype]} namespace" if nstype in NAMES else "no namespace"
        raise PlanError(f"{e.spelling}: {e.path} is {what}, not a {e.kind} namespace")
    return fd


def _check_fits(e: JoinNs, inventory, net_devices) -> None:
    """What the images or the plan say of the same namespace must not contradict the join."""
    if e.kind == "net" and inventory.ext_net_key:
        raise PlanError(f"{e.spelling}: the dump's network namespace is external "
                        f"({inventory.ext_net_key}): it is given with --inherit-fd, not joined")
    if e.kind == "net" and net_devices:
        raise PlanError(f"{e.spelling}: --external {net_devices[0].kind}[{net_devices[0].name}] makes a "
                        f"device in a network namespace that is joined, not made")


def _check_segment(e: JoinNs, pid: int, v) -> None:
    what = f"process {pid} attaches SysV shared memory segment {v.shmid}"
    try:
        raw = k.ipc_stat("shm", v.shmid)
    except OSError as err:
        raise PlanError(f"{e.spelling}: {what}, which that IPC namespace does not hold ({err.strerror})") from None
    size = struct.unpack_from("<Q", raw, k.SHM_SEGSZ)[0]
    if -(-size // k.PAGE_SIZE) * k.PAGE_SIZE != v.end - v.start:
        raise PlanError(f"{e.spelling}: {what}; that IPC namespace's segment {v.shmid} is {size} bytes, "
                        f"the attachment {v.end - v.start}")
