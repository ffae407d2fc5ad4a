"""The restore: rebuild the tree from its images, with the same PIDs, state and registers.

    load + validate every image
      -> open every file description once (above every dumped fd number)
      -> fork the root with clone3(set_tid); each task forks its own children
         (sessions first, helpers for dead leaders), all meet at barriers to
         set process groups, then helpers and zombies exit
      -> each live task premaps its memory, installs its fds and jumps into
         the restorer blob, which rebuilds the address space and traps
      -> the tracer (this process) loads registers, limits and seccomp,
         unmaps the blob and detaches everything at once.

The orchestrator traces the whole tree from the first fork (PTRACE_O_EXITKILL:
if it dies, so does every half-built task).  Any failure kills every task
created so far; the images are only ever opened read-only.
"""
from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import struct
import time

from . import files as files_mod
from . import kernel as k
from . import cgroups, extns, joinns, memory, mounts, namespaces, netns, pidns, proc, sysvipc
from . import task as task_mod
from .errors import CRError, ImageError, PlanError, RestoreError, fault_point
from .images import FORMAT_VERSION, INVENTORY, ImageDir
from .kinds import tty
from .notify import notify, notify_no_veto
from .restorer import BlobLayout, read_blob
from .seize import remote_syscall

log = logging.getLogger("lxc_cr.restore")

TIMEOUT = 60.0
ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK = 512, 513, 514, 516

# control block shared by every restoring task and the tracer
CB_FORKED, CB_GROUPS, CB_GO, CB_ERRLEN, CB_LEADERS = 0, 4, 8, 12, 16
CB_ERROR = 64
CB_SLOTS = 4096
SLOT = struct.Struct("<iiQQQ")        # pid, pad, args address, blob area start, size


def _pb():
    from .proto import images_pb2
    return images_pb2


class Image:
    """Everything read from the image directory, validated."""

    def __init__(self, inventory, pstree):
        self.inventory = inventory
        self.pstree = pstree
        self.tasks: dict = {}
        self.mms: dict = {}
        self.files = None
        self.shmem = None
        self.cgroups = None
        self.sysvipc = None


def load(images: ImageDir, shell_job: bool) -> Image:
    pb = _pb()
    inv = images.read(INVENTORY, pb.Inventory)
    where = f"{images.path}/{INVENTORY}"
    if inv.format_version != FORMAT_VERSION:
        raise ImageError(f"{where}: format version {inv.format_version}, expected {FORMAT_VERSION}")
    if inv.arch != os.uname().machine or inv.page_size != k.PAGE_SIZE:
        raise ImageError(f"{where}: dumped on {inv.arch} with {inv.page_size}-byte pages; cannot restore here")
    if inv.xfeatures & ~task_mod.xfeatures():
        raise ImageError(f"{where}: the dump needs CPU state {inv.xfeatures:#x}, this CPU has "
                         f"{task_mod.xfeatures():#x}")
    here = memory.vdso_layout()
    if [(v.name, v.size) for v in inv.vdso_layout] != here:
        raise ImageError(f"{where}: the dumping kernel's vDSO layout differs from this one's "
                         f"(different kernel); not supported yet")
    if inv.shell_job and not shell_job:
        raise PlanError("this dump is a shell job: restore it with --shell-job")
    img = Image(inventory=inv, pstree=images.read("pstree.img", pb.Pstree))
    _validate_pstree(img.pstree, inv.root_pid, inv.shell_job, f"{images.path}/pstree.img")
    extns.validate(inv, where)
    if inv.pid_ns:
        _validate_pid_ns(img.pstree, inv.shell_job, f"{images.path}/pstree.img", init=not inv.ext_pid_key)
    if inv.HasField("net"):
        netns.validate(inv.net, where)
    img.files = files_mod.validate_files(images.read("files.img", pb.Files))
    img.shmem = images.read("shmem.img", pb.SharedMemory)
    img.cgroups = images.read(cgroups.IMAGE, cgroups.message())
    cgroups.validate(img.cgroups, f"{images.path}/{cgroups.IMAGE}")
    img.sysvipc = sysvipc.load(images, inv)
    file_ids = set(img.files)
    shmem_ids = {o.id for o in img.shmem.objects}
    for p in img.pstree.processes:
        if p.state not in (pb.Process.ALIVE, pb.Process.STOPPED):
            continue
        t = images.read(f"task-{p.pid}.img", pb.Task)
        mm = images.read(f"mm-{p.pid}.img", pb.Mm)
        where = f"{images.path}/task-{p.pid}.img"
        if t.pid != p.pid or mm.pid != p.pid or [th.tid for th in t.threads] != list(p.tids):
            raise ImageError(f"{where}: does not match pstree.img")
        _validate_task(t, inv, where)
        files_mod.validate_fds(t, file_ids, where)
        memory.validate_mm(mm, images.size(f"pages-{p.pid}.img"), f"{images.path}/mm-{p.pid}.img")
        sysvipc.validate_vmas(mm, img.sysvipc, f"{images.path}/mm-{p.pid}.img")
        for v in mm.vmas:
            if v.kind == pb.Vma.ANON_SHARED and v.shmem_id not in shmem_ids:
                raise ImageError(f"{images.path}/mm-{p.pid}.img: unknown shared memory {v.shmem_id}")
        img.tasks[p.pid], img.mms[p.pid] = t, mm
    return img


def _validate_pstree(pstree, root: int, shell_job: bool, where: str) -> None:
    pb = _pb()
    # a shell job's session or group may lie outside the dumper's PID namespace: it reads as 0
    lowest = 0 if shell_job else 1
    seen = set()
    if not pstree.processes or pstree.processes[0].pid != root or pstree.processes[0].ppid != 0:
        raise ImageError(f"{where}: the first process is not the root {root}")
    pid_max = int(open("/proc/sys/kernel/pid_max").read())
    for p in pstree.processes:
        ids = [p.pid] + list(p.tids)
        if any(not 0 < i < pid_max for i in ids) or p.pid in seen:
            raise ImageError(f"{where}: bad or duplicate PID {p.pid}")
        if p.ppid and p.ppid not in seen:
            raise ImageError(f"{where}: process {p.pid} comes before its parent {p.ppid}")
        if p.state in (pb.Process.ALIVE, pb.Process.STOPPED) and (not p.tids or p.tids[0] != p.pid):
            raise ImageError(f"{where}: process {p.pid} has no leader thread")
        if not (lowest <= p.sid < pid_max and lowest <= p.pgid < pid_max):
            raise ImageError(f"{where}: process {p.pid} has a bad session or group")
        seen.add(p.pid)


def _validate_pid_ns(pstree, shell_job: bool, where: str, init: bool) -> None:
    seen = set()
    lowest = 0 if shell_job else 1
    for p in pstree.processes:
        own = [p.ns_pid, *p.ns_tids]
        bad = (any(not 0 < i < 1 << 22 for i in own) or any(not lowest <= i < 1 << 22 for i in (p.ns_pgid, p.ns_sid))
               or p.ns_pid in seen or len(p.ns_tids) != len(p.tids))
        if bad:
            raise ImageError(f"{where}: bad PID namespace numbers for process {p.pid}")
        seen.add(p.ns_pid)
    if init and pstree.processes[0].ns_pid != 1:
        raise ImageError(f"{where}: the root is not its PID namespace's init")


def _validate_task(t, inv, where: str) -> None:
    if len(t.sigactions) != task_mod.NSIG or len(t.itimers) != 3:
        raise ImageError(f"{where}: wrong number of signal actions or itimers")
    regs_size = k.ffi.sizeof("struct user_regs_struct")
    for th in t.threads:
        if len(th.regs) != regs_size:
            raise ImageError(f"{where}: thread {th.tid} registers are {len(th.regs)} bytes")
        if len(th.xsave) != inv.xsave_size or inv.xsave_size != task_mod.xsave_size():
            raise ImageError(f"{where}: thread {th.tid} xsave block does not fit this CPU")
        if any(len(s) != 128 for s in th.siginfo):
            raise ImageError(f"{where}: thread {th.tid} has a bad pending signal")
        regs = k.regs_from_bytes(th.regs)
        if regs.rip >= k.TASK_SIZE or regs.cs != 0x33 or regs.ss != 0x2b:
            raise ImageError(f"{where}: thread {th.tid} registers are not those of a 64-bit user task")
    task_mod.check_xsave(t, inv.xfeatures, where)
    if any(len(s) != 128 for s in t.shared_siginfo):
        raise ImageError(f"{where}: bad pending signal")
    c = t.creds
    if len(c.uids) != 4 or len(c.gids) != 4 or len(c.groups) > 65536:
        raise ImageError(f"{where}: bad credentials")
    if len(t.posix_timers) > 4096 or any(not 0 <= pt.id < 1 << 30 for pt in t.posix_timers):
        raise ImageError(f"{where}: bad POSIX timers")


# --- the orchestrator ------------------------------------------------------------------------

def restore(plan) -> int:
    """Restore plan.images_dir; returns the root PID (detached) or its exit status."""
    notify(plan, "pre-restore")
    images = ImageDir.for_restore(plan.images_dir)
    img = load(images, plan.shell_job)
    _check_pids_free(img.pstree)
    fault_point("validate")
    r = _Restorer(plan, images, img)
    try:
        root = r.run()
    except BaseException as e:
        if r.net is not None:
            r.net.undo()
        if isinstance(e, OSError):
            raise RestoreError(f"restore failed: {e}") from None
        raise
    finally:
        if r.net is not None:
            r.net.close()
        if r.building is not None:
            r.building.close()      # the builder, if we never took its namespace
        if r.mnt is not None:
            r.mnt.close()
        if r.joined is not None:
            r.joined.close()
        images.close()
    if plan.pidfile:
        _write_pidfile(plan.pidfile, root)
    notify_no_veto(plan, "post-resume", root)
    if plan.detach or plan.restore_sibling:
        return root          # a sibling is our parent's child: only it can wait for it
    _, status = os.waitpid(root, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code     # killed by a signal: as a shell reports it


def _check_pids_free(pstree) -> None:
    for p in pstree.processes:
        for i in {p.pid, *p.tids}:
            if proc.exists(i):
                raise RestoreError(f"PID {i} is already in use; cannot restore process {p.pid}")


def _write_pidfile(path: str, pid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{pid}".encode())
    finally:
        os.close(fd)


class _Restorer:
    def __init__(self, plan, images: ImageDir, img: Image):
        pb = _pb()
        self.plan = plan
        self.images = images
        self.img = img
        self.procs = list(img.pstree.processes)
        self.children: dict[int, list] = {}
        for p in self.procs:
            self.children.setdefault(p.ppid, []).append(p)
        self.live = [p for p in self.procs if p.state in (pb.Process.ALIVE, pb.Process.STOPPED)]
        self.expected_exits = {p.pid for p in self.procs if p.state in (pb.Process.ZOMBIE, pb.Process.HELPER)}
        self.index = {p.pid: i for i, p in enumerate(self.procs)}
        # which task (first in tree order) finishes each file that needs the task itself
        self.first_holder: dict[int, int] = {}
        for p in self.procs:
            for f in img.tasks[p.pid].fds if p.pid in img.tasks else ():
                self.first_holder.setdefault(f.file_id, p.pid)
        # a shell job's session, and maybe group, belong to the shell: restore
        # leaves the job in the caller's (only a shell job's images have these)
        self.outside = {p.pgid for p in self.procs if p.pgid not in self.index}
        self.pid_ns = img.inventory.pid_ns
        self.inner = pidns.inner_ids(img.pstree) if self.pid_ns else {}
        self.created: list[int] = []
        self.base_fd = 3 + max([f.fd for t in img.tasks.values() for f in t.fds] + [2])
        self.cb = 0
        self.cb_size = 0
        self.net = None             # netdev.HostDevices: a network namespace of its own
        self.building = None        # mounts.Building: that namespace being made
        self.mnt = None             # mounts.MountNs of a mount namespace of its own, or joined
        self.joined = None          # joinns.Joined: namespaces joined, whose contents are not made
        self.sysv = img.sysvipc     # the SysV objects to make (none in a joined IPC namespace)

    # each step runs in the orchestrator unless its name says task_

    def run(self) -> int:
        self._raise_nofile()
        for t in self.img.tasks.values():
            for warning in task_mod.rlimit_warnings(t):
                log.warning("%s", warning)
        self.ext = extns.fds_for(self.img.inventory, self.plan.inherit_fds)    # checked before anything is made
        self.joined = joinns.Joined(self.plan.join_namespaces, self.img.inventory, self.plan.net_devices)
        # the tasks' files are opened as they will see them (engine/mounts.py): a child
        # builds their mount namespace while we make the network, unless they join one
        self.mnt = self.joined.mount_ns()
        if self.mnt is None:
            self.building = mounts.prepare(self.images, self.img.inventory, self.plan)
        # before any socket is made; undone by restore() if anything fails
        self.joined.enter(self.ext)        # an external network namespace too (extns.join_net)
        self.joined.check_attachments(self.img.mms)
        if self.joined.has("ipc"):
            self.sysv = None
        self.cgroups = cgroups.Placement(self.img.tasks, self.img.cgroups, self.plan.cgroup_roots,
                                         self.plan.manage_cgroups)
        self.cgroups.start_warming()        # the kernel's wait for the first move, meanwhile
        if not self.joined.has("net"):
            self.net = netns.restore(self.img.inventory, self.plan.net_devices, self.img.files)
        if self.building:
            self.mnt = self.building.result()
        self.file_ctx = files_mod.RestoreContext(self.images, self.plan, self.img.files, self.base_fd, mnt=self.mnt)
        # memory objects first: a memfd's open files are new opens of the object its mappings share
        self.shmem_fds = {i: files_mod.move_above(fd, self.base_fd)
                          for i, fd in memory.restore_shmem(self.images, self.img.shmem).items()}
        self.file_ctx.shmem_fds = self.shmem_fds
        self.opened = files_mod.open_all(self.file_ctx)
        self.blob = read_blob()
        self.cb_size = CB_SLOTS + SLOT.size * len(self.procs)
        self.cb = k.mmap(0, self.cb_size, k.PROT_READ | k.PROT_WRITE, k.MAP_SHARED | k.MAP_ANONYMOUS)
        was_subreaper = k.is_child_subreaper()
        k.set_child_subreaper(True)
        root = self.procs[0]
        try:
            self.cgroups.create()
            self.cgroups.finish_warming()
            flags = k.CLONE_PARENT if self.plan.restore_sibling else 0
            flags |= (k.CLONE_NEWPID if self.pid_ns and "pid" not in self.ext else 0) | \
                namespaces.restore_flags(self.img.inventory) & ~self.joined.flags()
            # the tasks are forks of this process: a garbage collection in one of them would
            # touch, and so copy, every object of ours; frozen ones are not looked at (until
            # unfrozen once the tree is built: the RPC server goes on serving)
            gc.freeze()
            with extns.PidChildren(self.ext):       # the caller's PID namespace, if external
                pid = k.clone3_fork(flags, self._set_tid(root))
                if pid == 0:
                    self._task_main(root)
            self.created.append(pid)
            k.ptrace(k.PTRACE_SEIZE, pid, 0, TRACE_OPTS, "PTRACE_SEIZE")
            if flags & ~k.CLONE_PARENT or self.img.inventory.HasField("net") or self.mnt or self.joined.flags():
                notify(self.plan, "setup-namespaces", pid)
                notify(self.plan, "post-setup-namespaces", pid)
            self._cb_u32_set(CB_GO, 1)
            k.lib.lxc_futex_wake(self._cb_ptr(CB_GO), 1 << 30)
            trapped = self._trace_until_trapped()
            memory.seal_shmem(self.img.shmem, self.shmem_fds)     # every mapping exists now
            sysvipc.remove_again(pid, self.sysv)
            fault_point("registers")
            self._finish(trapped)
            return pid
        except BaseException as e:
            self._kill_all()
            self.cgroups.undo()
            if isinstance(e, CRError):
                raise
            if isinstance(e, OSError):
                raise RestoreError(f"restore failed: {e}") from None
            raise
        finally:
            gc.unfreeze()
            for fd in list(self.opened.values()) + list(self.shmem_fds.values()):
                os.close(fd)
            k.set_child_subreaper(was_subreaper)
            k.munmap(self.cb, self.cb_size)
            self.cgroups.close()

    def _raise_nofile(self) -> None:
        need = self.base_fd + len(self.img.files) + len(self.img.shmem.objects) + 64
        cur, mx = k.prlimit(0, 7)
        if cur < need:
            if mx < need:
                raise RestoreError(f"the dump uses fd numbers up to {self.base_fd - 3}; "
                                   f"RLIMIT_NOFILE {mx} is too low")
            k.prlimit(0, 7, (need, mx))

    # --- shared control block ----------------------------------------------------------------

    def _cb_ptr(self, off: int):
        return k.ffi.cast("uint32_t *", self.cb + off)

    def _cb_u32(self, off: int) -> int:
        return self._cb_ptr(off)[0]

    def _cb_u32_set(self, off: int, value: int) -> None:
        self._cb_ptr(off)[0] = value

    def _cb_error(self) -> str:
        n = self._cb_u32(CB_ERRLEN)
        return bytes(k.ffi.buffer(k.ffi.cast("char *", self.cb + CB_ERROR), min(n, CB_SLOTS - CB_ERROR))).decode(
            "utf-8", "replace") if n else ""

    def _slot(self, pid: int) -> tuple[int, int, int]:
        """(args address, blob area start, blob area size) announced by process pid."""
        index = self.index[pid]
        raw = bytes(k.ffi.buffer(k.ffi.cast("char *", self.cb + CB_SLOTS + index * SLOT.size), SLOT.size))
        spid, _, args, area, size = SLOT.unpack(raw)
        if spid != pid:
            raise RestoreError(f"process {pid} trapped before announcing its restorer")
        return args, area, size

    # --- the tracer ------------------------------------------------------------------------------

    def _trace_until_trapped(self) -> dict[int, int]:
        """Let the tree build itself; returns tid -> pid for every thread that reached the final trap."""
        want = {tid: p.pid for p in self.live for tid in p.tids}
        trapped: dict[int, int] = {}
        deadline = time.monotonic() + TIMEOUT
        old = signal.signal(signal.SIGALRM, lambda *_: None)
        signal.setitimer(signal.ITIMER_REAL, 0.2, 0.2)
        try:
            while len(trapped) < len(want):
                if time.monotonic() > deadline:
                    raise RestoreError(f"restore timed out; {len(want) - len(trapped)} threads never got ready")
                try:
                    tid, status = k.wait(-1, k.WALL)
                except OSError as e:
                    if e.errno == errno.EINTR:
                        continue
                    raise
                self._on_event(tid, status, want, trapped)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            signal.signal(signal.SIGALRM, old)
        return trapped

    def _on_event(self, tid: int, status: int, want: dict, trapped: dict) -> None:
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            if tid in self.expected_exits:
                self.expected_exits.discard(tid)
                return
            msg = self._cb_error() or (f"task {tid} exited with status {os.WEXITSTATUS(status)}"
                                       if os.WIFEXITED(status) else
                                       f"task {tid} was killed by signal {os.WTERMSIG(status)}")
            raise RestoreError(msg)
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if event in (k.PTRACE_EVENT_FORK, k.PTRACE_EVENT_VFORK, k.PTRACE_EVENT_CLONE):
            k.ptrace(k.PTRACE_GETEVENTMSG, tid, 0, int(k.ffi.cast("uintptr_t", _msg_buf)), "GETEVENTMSG")
            self.created.append(int(_msg_buf[0]))
            k.ptrace(k.PTRACE_CONT, tid, 0, 0)
            return
        if event == k.PTRACE_EVENT_STOP:
            k.ptrace(k.PTRACE_CONT, tid, 0, 0)
            return
        if sig == signal.SIGTRAP and tid in want:
            info = k.get_siginfo(tid)
            if struct.unpack_from("<i", info, 8)[0] == 0x80:        # SI_KERNEL: our int3
                self._check_blob(tid, want[tid])
                trapped[tid] = want[tid]
                return
        # a zombie-to-be replaying its death gets its signal; anything else
        # (SIGCHLD from the zombies being made...) is not the tree's: drop it
        k.ptrace(k.PTRACE_CONT, tid, 0, sig if tid in self.expected_exits else 0)

    def _check_blob(self, tid: int, pid: int) -> None:
        args, _, _ = self._slot(pid)
        step, error = struct.unpack("<Ii", k.read_remote(pid, args + 8, 8))
        if error:
            raise RestoreError(f"process {pid}: restorer failed at step {STEP_NAMES.get(step, step)}: "
                               f"{os.strerror(-error)}")

    def _finish(self, trapped: dict[int, int]) -> None:
        pb = _pb()
        # file owners may be any task or thread: all exist now, and none runs yet
        files_mod.restore_owners(self.file_ctx, {t for p in self.live for t in p.tids}
                                 | {p.pid for p in self.procs}, {p.pgid for p in self.procs})
        for p in self.live:
            t = self.img.tasks[p.pid]
            for th in t.threads:
                _load_registers(th)
            task_mod.apply_outside(p.pid, t)
        for p in self.live:
            _, area, size = self._slot(p.pid)
            # the blob moved the vDSO where it was dumped: no need to read the task's maps
            vdso = next(v.start for v in self.img.mms[p.pid].vmas if v.kind == pb.Vma.VDSO)
            remote_syscall(p.pid, p.pid, "munmap", area, size, vdso=vdso)
        for p in self.live:
            if p.state == pb.Process.STOPPED:
                os.kill(p.pid, signal.SIGSTOP)
        root = self.procs[0].pid
        notify(self.plan, "post-restore", root)     # the last veto: nothing runs yet
        if self.net is not None:
            notify_no_veto(self.plan, "network-unlock", root)
        notify(self.plan, "pre-resume", root)
        for tid in trapped:
            k.ptrace(k.PTRACE_DETACH, tid, 0, 0, "PTRACE_DETACH")
        log.info("restored %d processes, %d threads", len(self.live), len(trapped))

    def _kill_all(self) -> None:
        for pid in reversed(self.created):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # every task is our descendant and we are a subreaper: reap them all
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG | k.WALL)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.005)

    # --- inside each restoring task -----------------------------------------------------------------

    def _task_main(self, p) -> None:
        """Runs in the forked task; never returns."""
        try:
            self._task_build(p)
        except BaseException as e:  # report to the tracer, never to the task's own stderr
            self._task_report(p.pid, e)
        os._exit(1)

    def _task_report(self, pid: int, e: BaseException) -> None:
        if isinstance(e, CRError):
            text = str(e)
        else:
            import traceback
            where = traceback.extract_tb(e.__traceback__)[-1]
            text = f"process {pid}: {type(e).__name__}: {e} (at {os.path.basename(where.filename)}:{where.lineno})"
        data = text.encode()[:CB_SLOTS - CB_ERROR - 1]
        if self._cb_u32(CB_ERRLEN) == 0:
            k.ffi.memmove(k.ffi.cast("char *", self.cb + CB_ERROR), data, len(data))
            self._cb_u32_set(CB_ERRLEN, len(data))

    def _task_build(self, p) -> None:
        pb = _pb()
        # wait until the tracer holds us: every fork from here on is traced
        while self._cb_u32(CB_GO) == 0:
            k.lib.lxc_futex_wait(self._cb_ptr(CB_GO), 0, 100)
        for h in logging.getLogger().handlers:
            h.close()
        logging.getLogger().handlers.clear()
        if p.ppid == 0:
            if not self.joined.has("uts"):
                namespaces.restore_in_root(self.img.inventory)
            sysvipc.restore_in_root(self.images, self.sysv)
        self.cgroups.join(p.pid)     # before forking: children start where they belong
        if p.ppid == 0:
            namespaces.enter_cgroup_ns(self.img.inventory)    # rooted where the root now is
            if self.mnt is not None:
                self.mnt.enter(self.images)     # in its namespaces: its proc, sysfs, mqueue, cgroups
        if p.sid == p.pid:
            os.setsid()
            tty.take_ctty(self.file_ctx, p.pid)     # before forking: the session's tasks inherit it
        t = self.img.tasks.get(p.pid)
        if t is not None and t.child_subreaper:
            k.set_child_subreaper(True)
        for child in self.children.get(p.pid, []):
            if k.clone3_fork(0, self._set_tid(child)) == 0:
                self._task_main(child)
        self._barrier(CB_FORKED)
        # from here on, PIDs as this task sees them (they differ in a PID namespace)
        me, pgid = self._seen(p.pid), self._seen(p.pgid)
        # group leaders first: a member can only join a group that exists
        if pgid == me and os.getpgid(0) != me:
            os.setpgid(0, 0)
        self._barrier(CB_LEADERS)
        if pgid != os.getpgid(0) and p.pgid not in self.outside:
            os.setpgid(0, pgid)
        self._barrier(CB_GROUPS)
        tty.set_foreground(self.file_ctx, p.pid, p.sid, self._seen)   # every group exists now
        if p.state == pb.Process.HELPER:
            os._exit(0)
        if p.state == pb.Process.ZOMBIE:
            _become_zombie(p.exit_status)
        for child in self.children.get(p.pid, []):
            if child.state == pb.Process.HELPER:
                os.waitpid(self._seen(child.pid), 0)
            elif child.state == pb.Process.ZOMBIE:
                os.waitid(os.P_PID, self._seen(child.pid), os.WEXITED | os.WNOWAIT)
        fault_point("task")
        self._task_restore(p, t, self.img.mms[p.pid])

    def _set_tid(self, p) -> list[int]:
        """clone3's set_tid for process p: innermost namespace first."""
        return [p.ns_pid, p.pid] if self.pid_ns else [p.pid]

    def _seen(self, pid: int) -> int:
        """A PID of the dump as the restored tasks see it."""
        return self.inner.get(pid, pid)

    def _barrier(self, off: int) -> None:
        n = len(self.procs)
        ptr = self._cb_ptr(off)
        k.lib.lxc_atomic_inc(ptr)
        while True:
            cur = ptr[0]
            if cur >= n:
                k.lib.lxc_futex_wake(ptr, 1 << 30)
                return
            k.lib.lxc_futex_wait(ptr, cur, 100)

    def _task_restore(self, p, t, mm) -> None:
        pb = _pb()
        pages = files_mod.move_above(self.images.open(f"pages-{p.pid}.img"), self.base_fd)
        exe_fd = self._exe_fd(mm.exe)
        here = memory.vdso_areas()
        dumped = [(v.start, v.end) for v in mm.vmas if v.kind != pb.Vma.VSYSCALL]
        current = [(m.start, m.end) for m in proc.maps("self")]
        n_moves = len(memory.premap_vmas(mm)) + 2 * len(here)
        layout = BlobLayout(len(self.blob), t, mm, n_moves, n_unmap=len(here) + 2)
        vdso_total = sum(e - s for s, e in here.values()) + 3 * k.PAGE_SIZE
        total = memory.premap_size(mm) + vdso_total + layout.size
        base = memory.find_hole(total, dumped + current)
        premaps = memory.premap(mm, pages, self.shmem_fds, base, f"process {p.pid}")
        os.close(pages)
        cursor = base + memory.premap_size(mm)
        # vDSO pieces: to a parking place first, so no move lands on a piece not yet moved
        names = {pb.Vma.VDSO: "[vdso]", pb.Vma.VVAR: "[vvar]", pb.Vma.VVAR_VCLOCK: "[vvar_vclock]"}
        dumped_vdso = {names[v.kind]: v.start for v in mm.vmas if v.kind in names}
        if set(dumped_vdso) != set(here):
            raise ImageError(f"process {p.pid}: vDSO pieces {sorted(dumped_vdso)} differ from this kernel's")
        first, last = [], []
        for name, (s, e) in here.items():
            first.append((s, cursor, e - s))
            last.append((cursor, dumped_vdso[name], e - s))
            cursor += e - s + k.PAGE_SIZE
        moves = first + [(m.src, m.dst, m.length) for m in premaps] + last
        area = cursor
        keep = [(base, area + layout.size)] + [tuple(r) for r in here.values()]
        unmap = _complement(keep)
        args = layout.build(area, self.blob, moves, unmap, exe_fd, self.inner)
        self._task_announce(p.pid, args, area, layout.size)
        # files last: from here on the fd table is the task's own
        files_mod.install(t, self.opened)
        files_mod.finish_in_task(self.file_ctx, t, self.first_holder)
        os.chdir(t.cwd)
        if t.root != "/":
            os.chroot(t.root)
        task_mod.apply_rlimits(t)
        _install_seccomp(p.pid, t)
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        k.lib.lxc_call_blob(area, args)

    def _exe_fd(self, path: str) -> int:
        """The fd PR_SET_MM_MAP sets the exe link from, or -1 to keep ours: when the
        task ran the same file as we do (a Python program), the kernel refuses to
        switch (it still sees that file mapped) and there is nothing to switch.
        An executable deleted since it started (an upgraded binary) is the file
        its mappings were recreated from."""
        if path.endswith(memory.DELETED):
            for obj in self.img.shmem.objects:
                if obj.path == path[:-len(memory.DELETED)] and obj.id in self.shmem_fds:
                    return files_mod.move_above(os.dup(self.shmem_fds[obj.id]), self.base_fd)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"executable {path}: {e.strerror}") from None
        st, ours = os.fstat(fd), os.stat("/proc/self/exe")
        if (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
            os.close(fd)
            return -1
        return files_mod.move_above(fd, self.base_fd)

    def _task_announce(self, pid: int, args: int, area: int, size: int) -> None:
        data = SLOT.pack(pid, 0, args, area, size)
        k.ffi.memmove(k.ffi.cast("char *", self.cb + CB_SLOTS + self.index[pid] * SLOT.size), data, len(data))


TRACE_OPTS = (k.PTRACE_O_TRACESYSGOOD | k.PTRACE_O_TRACEFORK | k.PTRACE_O_TRACEVFORK
              | k.PTRACE_O_TRACECLONE | k.PTRACE_O_EXITKILL | k.PTRACE_O_SUSPEND_SECCOMP)
_msg_buf = k.ffi.new("unsigned long *")

STEP_NAMES = {1: "start", 2: "unmap", 3: "move", 4: "mm", 5: "sigaction", 6: "itimer", 7: "timer",
              8: "task", 9: "fds", 10: "threads", 11: "thread", 12: "creds", 13: "signals", 14: "trap"}


def _become_zombie(status: int) -> None:
    """Exit so that the parent's wait() sees exactly `status`."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        k.prlimit(0, 4, (0, 0))       # RLIMIT_CORE: no core file for a replayed death
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
        time.sleep(10)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0)


def _complement(keep: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    pos = k.PAGE_SIZE
    for s, e in sorted(keep):
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
    if pos < k.TASK_SIZE:
        out.append((pos, k.TASK_SIZE))
    return out


def _load_registers(th) -> None:
    """Registers, extended state and signal mask of one trapped thread, with the restart rules."""
    regs = k.regs_from_bytes(th.regs)
    ret = regs.rax if regs.rax < 2**63 else regs.rax - 2**64
    if regs.orig_rax < 2**63:            # stopped inside a system call
        if ret in (-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND):
            regs.rax = regs.orig_rax
            regs.rip -= 2
        elif ret == -ERESTART_RESTARTBLOCK:
            regs.rax = (-errno.EINTR) & 0xFFFFFFFFFFFFFFFF
    regs.orig_rax = 0xFFFFFFFFFFFFFFFF
    k.set_regs(th.tid, regs)
    k.set_regset(th.tid, k.NT_X86_XSTATE, th.xsave)
    k.set_sigmask(th.tid, th.sigmask)


def _install_seccomp(pid: int, t) -> None:
    """The task's filters, outermost first, installed by the task itself before its blob restores
    its credentials: a task without CAP_SYS_ADMIN or no_new_privs (podman's default) could not
    install them later.  The tracer's SUSPEND_SECCOMP keeps them off until detach; the threads
    the blob makes inherit them."""
    for f in t.seccomp:
        prog = f.program
        if len(prog) % 8 or not 0 < len(prog) // 8 <= 4096:
            raise ImageError(f"task-{pid}.img: bad seccomp filter")
        code = k.ffi.new("char[]", prog)
        fprog = k.ffi.new("char[]", struct.pack("<HxxxxxxQ", len(prog) // 8, int(k.ffi.cast("uintptr_t", code))))
        k.syscall("seccomp", 1, f.flags & ~1, int(k.ffi.cast("uintptr_t", fprog)))   # SET_MODE_FILTER, no TSYNC
