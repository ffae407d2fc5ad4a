"""The dump: freeze the tree, collect every task's state, write the images, kill or resume.

Nothing is written until everything has been collected and checked, except
page data and file contents, which go straight to their image files; if
anything fails, every file this dump created is removed and the tree is
released exactly as it was.  inventory.img is written last: its presence is
what marks a complete dump.
"""
from __future__ import annotations

import logging
import os
import signal
import time

from . import files as files_mod
from . import kernel as k
from . import cgroups, extns, locks, mounts, namespaces, netns, pidns, proc, sysvipc, task as task_mod
from .errors import CRError, DumpError, UnsupportedError, fault_point
from .images import FORMAT_VERSION, INVENTORY, ImageDir, prune
from .memory import MemoryDumper, vdso_layout
from .freezer import Freezer
from .notify import notify, notify_no_veto
from .kinds import tty
from .seize import Seizure

log = logging.getLogger("lxc_cr.dump")


class DumpStats:
    def __init__(self):
        self.freezing_time = 0.0
        self.frozen_time = 0.0
        self.memdump_time = 0.0
        self.pages_written = 0


def _pb():
    from .proto import images_pb2
    return images_pb2


def dump(plan) -> DumpStats:
    """Checkpoint the tree rooted at plan.pid into plan.images_dir."""
    stats = DumpStats()
    notify(plan, "pre-dump", plan.pid)
    images = ImageDir.for_dump(plan.images_dir)
    _pb()                   # load protobuf now: the tree should not wait for an import
    vdso_layout()           # nor for our vDSO's layout (the inventory's; read once)
    seizure = Seizure(plan.pid, Freezer(plan.freeze_cgroup) if plan.freeze_cgroup else None)
    t0 = time.monotonic()
    collector = None
    net_locked = False
    try:
        seizure.seize()
        fault_point("seize")
        t1 = time.monotonic()
        stats.freezing_time = t1 - t0
        collector = _Collector(plan, images, seizure)
        try:
            collector.collect()
        finally:
            collector.file_ctx.close()
        if collector.net is not None:       # the tree's own network: the caller may lock it
            net_locked = True
            notify(plan, "network-lock", plan.pid)
        fault_point("collect")
        seizure.drop_scratch()
        collector.write()
        stats.memdump_time = collector.memdump_time
        stats.pages_written = collector.memory.pages_written
        fault_point("write")
        images.write(INVENTORY, collector.inventory())
        notify(plan, "post-dump", plan.pid)           # the last veto: the tree is still whole
    except BaseException as e:
        images.remove_created()
        if net_locked:
            notify_no_veto(plan, "network-unlock", plan.pid)
        if collector is not None:
            collector.file_ctx.release()
        seizure.release()
        images.close()
        if isinstance(e, CRError):
            raise
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(e, ProcessLookupError):
            raise DumpError(f"a task of the tree exited during the dump ({e})") from None
        if isinstance(e, OSError):
            raise DumpError(f"dump failed: {e}") from None
        raise
    if plan.leave_running:
        if net_locked:
            notify_no_veto(plan, "network-unlock", plan.pid)
        collector.file_ctx.release()
        seizure.release()
    else:
        seizure.kill()
    stats.frozen_time = time.monotonic() - t0
    if plan.compress == "zstd":      # the tree is already released: it does not wait for this
        images.compress([n for n in images.created if n.startswith(("pages-", "shmem-"))])
    images.close()
    if plan.retention:
        prune(*plan.retention)
    log.info("dump of %d complete: frozen for %.1f ms (memory %.1f ms), %d pages written",
             plan.pid, stats.frozen_time * 1000, stats.memdump_time * 1000, stats.pages_written)
    return stats


class _Collector:
    def __init__(self, plan, images: ImageDir, seizure: Seizure):
        self.plan = plan
        self.images = images
        self.s = seizure
        self.memory = MemoryDumper(images)
        self.file_ctx = files_mod.DumpContext(images, plan, set(seizure.processes), memory=self.memory)
        self.files = files_mod.FileTable(self.file_ctx)
        self.tasks = {}
        self.mms = {}
        self.pstree = _pb().Pstree()
        self.memdump_time = 0.0

    def collect(self) -> None:
        pb = _pb()
        processes = self.s.processes
        self.ext = extns.check_dump(self.plan.pid, self.plan.external_namespaces)   # the caller's namespaces
        self.pid_ns = pidns.own_namespace(self.plan.pid, external="pid" in self.ext)
        namespaces.check(self.plan.pid, [p for p in self.s.order if not processes[p].zombie])
        self.uts = namespaces.dump_uts(self.plan.pid, pb)
        self.ipc_ns = namespaces.dump_ipc(self.plan.pid)
        self.sysvipc = sysvipc.dump(self.plan.pid, self.images) if self.ipc_ns else None
        self.cgroup_ns = namespaces.dump_cgroup_ns(self.plan.pid)
        self.mnt_ns = mounts.dump(self.plan, self.images)
        self.net = netns.dump(self.plan.pid, "net" in self.ext)     # the dumper stays in the tree's netns
        self._check_sessions()
        for pid in self.s.order:
            info = processes[pid]
            st = proc.stat(pid)
            entry = self.pstree.processes.add(pid=pid, ppid=info.ppid, pgid=st.pgid, sid=st.sid)
            if pid == self.plan.pid:
                entry.ppid = 0
            if self.pid_ns:
                pidns.record(entry, pid, self.plan.pid)
            if info.zombie:
                entry.state = pb.Process.ZOMBIE
                entry.exit_status = st.exit_code
                continue
            entry.tids.extend(info.tids)
            if self.pid_ns:
                entry.ns_tids.extend(pidns.ns_tid(pid, tid) for tid in info.tids)
            if any(self.s.tracees[t].stopped for t in info.tids if t in self.s.tracees):
                entry.state = pb.Process.STOPPED
                entry.stop_signal = signal.SIGSTOP
            # files first: an unsupported object fails the dump before memory is copied
            fds = self.files.dump_fds(pid)
            tty.check_ctty(self.file_ctx, pid)      # a controlling terminal restore can give back
            t = task_mod.dump_task(self.s, pid, info.tids)
            t.fds.extend(fds)
            cgroups.dump(pid, t)
            self.tasks[pid] = t
            self.mms[pid] = self._mm(pid)
        self.cgroups = cgroups.dump_tree(self.plan.pid, self.plan.cgroup_roots, self.plan.manage_cgroups,
                                         self.tasks)
        _add_helpers(self.pstree)

    def _check_sessions(self) -> None:
        """The root's session and group must be the tree's own, unless it is a shell job.

        Other sessions and groups whose leader is gone are recreated by helpers."""
        pids = set(self.s.processes)
        root = proc.stat(self.plan.pid)
        if self.plan.shell_job:
            return          # restore puts the job in the caller's session (and group, if need be)
        if root.sid not in pids:
            raise UnsupportedError(f"process {self.plan.pid} is in session {root.sid}, whose leader is "
                                   f"outside the tree (a job started from a shell? use --shell-job)")
        if root.pgid not in pids:
            raise UnsupportedError(f"process {self.plan.pid} is in process group {root.pgid}, whose leader "
                                   f"is outside the tree")

    def _mm(self, pid: int):
        pb = _pb()
        st = proc.stat(pid)
        mm = pb.Mm(pid=pid, start_code=st.start_code, end_code=st.end_code, start_data=st.start_data,
                   end_data=st.end_data, start_brk=st.start_brk, start_stack=st.start_stack,
                   arg_start=st.arg_start, arg_end=st.arg_end, env_start=st.env_start, env_end=st.env_end)
        leader = self.s.processes[pid].tids[0]
        mm.brk = self.s.remote_syscall(leader, "brk", 0)
        mm.auxv.extend(proc.auxv(pid))
        mm.exe = os.readlink(f"/proc/{pid}/exe")
        # the scratch page must not be dumped: drop it before reading the layout
        self.s.drop_scratch()
        mm.vmas.extend(self.memory.vmas(pid))
        t0 = time.monotonic()
        runs = self.memory.page_runs(pid, mm.vmas)
        for addr, n in runs:
            mm.pages.add(addr=addr, nr_pages=n)
        self.memory.dump_pages(pid, mm.vmas, runs)
        self.memdump_time += time.monotonic() - t0
        return mm

    def write(self) -> None:
        self.images.write("pstree.img", self.pstree)
        for pid, t in self.tasks.items():
            self.images.write(f"task-{pid}.img", t)
            self.images.write(f"mm-{pid}.img", self.mms[pid])
        self.images.write("files.img", self.files.message())
        self.images.write("shmem.img", self.memory.dump_shmem())
        self.images.write(cgroups.IMAGE, self.cgroups)
        if self.sysvipc is not None:
            self.images.write(sysvipc.IMAGE, self.sysvipc)

    def inventory(self):
        pb = _pb()
        from lxc_cr import __version__
        uname = os.uname()
        inv = pb.Inventory(format_version=FORMAT_VERSION, tool_version=__version__, root_pid=self.plan.pid,
                           kernel_release=uname.release, arch=uname.machine,
                           page_size=os.sysconf("SC_PAGE_SIZE"), xfeatures=task_mod.xfeatures(),
                           xsave_size=task_mod.xsave_size(), shell_job=self.plan.shell_job,
                           pid_ns=self.pid_ns, ipc_ns=self.ipc_ns, cgroup_ns=self.cgroup_ns, mnt_ns=self.mnt_ns,
                           dump_time_ns=time.time_ns())
        if self.uts is not None:
            inv.uts.CopyFrom(self.uts)
        if self.net is not None:
            inv.net.CopyFrom(self.net)
        extns.record(inv, self.ext)
        for name, size in vdso_layout():
            inv.vdso_layout.add(name=name, size=size)
        return inv


def _add_helpers(pstree) -> None:
    """Stand-ins for dead session and group leaders, placed where restore needs them.

    A session whose leader is gone: a helper with the leader's PID becomes the
    parent of the session's first member, calls setsid() before forking it and
    exits once every group is set up; the member then falls back to its real
    parent, which must be a child subreaper (it was one at dump time, or the
    member would not be its child).  A group whose leader is gone: a helper in
    the right session calls setpgid(0, 0) so the members can join the group.
    """
    pb = _pb()
    procs = {p.pid: p for p in pstree.processes}
    # a shell job's session belongs to the shell: restore puts the tree in the caller's session
    outside_sid = pstree.processes[0].sid if pstree.processes[0].sid not in procs else None
    helpers = []
    for p in list(pstree.processes):
        if p.sid not in procs and p.sid != outside_sid and p.sid not in [h.pid for h in helpers]:
            parent, sid = p.ppid, p.sid
            helper = pb.Process(pid=sid, ppid=parent, pgid=sid, sid=sid, state=pb.Process.HELPER,
                                ns_pid=p.ns_sid, ns_pgid=p.ns_sid, ns_sid=p.ns_sid)
            helpers.append(helper)
            procs[sid] = helper
            # every task of that session whose parent is the helper's parent hangs below the helper
            for q in pstree.processes:
                if q.sid == sid and q.ppid == parent:
                    q.ppid = sid
    for p in list(pstree.processes) + helpers:
        if p.pgid not in procs and p.sid != outside_sid:
            # the session leader (or its helper) forks the group's helper
            helper = pb.Process(pid=p.pgid, ppid=p.sid, pgid=p.pgid, sid=p.sid, state=pb.Process.HELPER,
                                ns_pid=p.ns_pgid, ns_pgid=p.ns_pgid, ns_sid=p.ns_sid)
            helpers.append(helper)
            procs[p.pgid] = helper
    # parents before children
    pstree.processes.extend(helpers)
    ordered = []
    placed = set()
    by_parent = {}
    for p in pstree.processes:
        by_parent.setdefault(p.ppid, []).append(p)
    def visit(pid):
        for child in by_parent.get(pid, []):
            if child.pid not in placed:
                placed.add(child.pid)
                ordered.append(child)
                visit(child.pid)
    visit(0)
    del pstree.processes[:]
    pstree.processes.extend(ordered)


def check_only(plan) -> list[str]:
    """Everything that would block a dump of the tree, found without freezing or writing anything.

    Each open file is classified as a dump would classify it; kinds that can
    refuse a file for reasons beyond its type say so through an optional
    check(ctx, f) -> list of reasons."""
    pids = _tree_pids(plan.pid)
    blockers = []
    ctx = files_mod.DumpContext(images=None, plan=plan, tree=set(pids))
    try:
        namespaces.check(plan.pid, [p for p in pids if _alive(p)])
    except UnsupportedError as e:
        blockers.append(str(e))
    except (ProcessLookupError, FileNotFoundError):
        pass                # a task exited meanwhile: the tree runs while we look
    root = proc.stat(plan.pid)
    if not plan.shell_job and (root.sid not in pids or root.pgid not in pids):
        blockers.append(f"process {plan.pid}: its session or process group leader is outside the tree "
                        f"(use --shell-job for a job started from a shell)")
    blockers.extend(mounts.check(plan))
    blockers.extend(extns.blockers(plan.pid, plan.external_namespaces))
    blockers.extend(netns.check(plan.pid, extns.is_named(plan.external_namespaces, "net")))     # before entering
    # sockets are classified from inside the tree's network namespace, as a dump does; the
    # caller gets its own back (the demo, for one, goes on to talk to LXC's abstract sockets)
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if namespaces.own(plan.pid, "net"):
            netns.enter(plan.pid)
        for pid in pids:
            try:
                blockers.extend(_task_blockers(ctx, plan, pid))
            except (ProcessLookupError, FileNotFoundError):
                continue    # the tree runs while we look: a task that exited blocks nothing
    finally:
        ctx.close()
        k.syscall("setns", home, k.CLONE_NEWNET)
        os.close(home)
    return blockers


def _alive(pid: int) -> bool:
    try:
        return proc.stat(pid).state != "Z"
    except ProcessLookupError:
        return False


def _task_blockers(ctx, plan, pid: int) -> list[str]:
    if proc.stat(pid).state == "Z":
        return []
    blockers = []
    for fd in proc.fds(pid):
        try:
            blockers.extend(_fd_blockers(ctx, pid, fd))
            blockers.extend(locks.check(plan, pid, fd))
        except FileNotFoundError:
            continue        # closed meanwhile
    try:
        tty.check_ctty(ctx, pid)
    except UnsupportedError as e:
        blockers.append(str(e))
    memory = MemoryDumper(images=None)
    try:
        memory.vmas(pid)
    except UnsupportedError as e:
        blockers.append(str(e))
    finally:
        for obj in memory.shmem.values():
            os.close(obj.fd)
    return blockers


def _tree_pids(root: int) -> list[int]:
    out, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        out.append(pid)
        queue.extend(proc.children(pid))
    return out


def _fd_blockers(ctx, pid: int, fd: int) -> list[str]:
    link = proc.fd_link(pid, fd)
    info = proc.fdinfo(pid, fd)
    try:
        st = os.stat(f"/proc/{pid}/fd/{fd}")
    except OSError as e:
        return [f"process {pid} fd {fd}: cannot stat {link}: {e.strerror}"]
    kind = files_mod.kind_for_dump(ctx, link, st)
    if kind is None:
        return [f"process {pid} fd {fd}: {files_mod.describe(link, st)} is not supported"]
    check = getattr(kind, "check", None)
    return check(ctx, files_mod.FileRef(pid, fd, link, st, info, None)) if check else []
