"""The Python side of the restorer blob: loading it, and laying out its arguments.

engine/asm/restorer.h is the contract; BlobLayout places struct rst_args, the
arrays it points to and one stack per thread in the blob area, right after the
blob's code, and fills them from a process's images.
"""
from __future__ import annotations

import os
import struct

from . import kernel as k
from . import task as task_mod
from .errors import RestoreError

ASM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "asm")
THREAD_STACK = 32 << 10
RST_MAGIC, RST_VERSION = 0x5243584C, 1
RSEQ_SIG = 0x53053053        # glibc's rseq signature on x86_64


def read_blob() -> bytes:
    path = os.path.join(ASM_DIR, "restorer.bin")
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise RestoreError(f"restorer blob {path} is missing: run `make setup`") from None


class BlobLayout:
    """Where struct rst_args, its arrays and the thread stacks go in the blob area."""

    def __init__(self, blob_size: int, t, mm, n_moves: int, n_unmap: int):
        ffi = k.ffi
        self.t, self.mm = t, mm
        self.off: dict[str, int] = {}
        pos = blob_size

        def take(name, size, align=64):
            nonlocal pos
            pos = _align(pos, align)
            self.off[name] = pos
            pos += max(size, 8)
        take("args", ffi.sizeof("struct rst_args"))
        take("unmap", 16 * n_unmap)
        take("moves", 24 * n_moves)
        take("auxv", 8 * len(mm.auxv))
        take("sigactions", ffi.sizeof("struct rst_sigaction") * task_mod.NSIG)
        take("timers", ffi.sizeof("struct rst_posix_timer") * len(t.posix_timers))
        take("threads", ffi.sizeof("struct rst_thread") * len(t.threads))
        take("shared_siginfo", 128 * len(t.shared_siginfo))
        take("siginfo", 128 * sum(len(th.siginfo) for th in t.threads))
        take("groups", 4 * len(t.creds.groups))
        take("fds", 4 * len(t.fds))
        take("stacks", THREAD_STACK * len(t.threads), k.PAGE_SIZE)
        self.size = _align(pos, k.PAGE_SIZE)

    def build(self, area: int, blob: bytes, moves, unmap, exe_fd: int, inner: dict[int, int]) -> int:
        """Map the area at `area`, fill it, and return the address of struct rst_args.

        `inner` maps the dump's TIDs to those the task sees in its PID namespace
        (empty when it has none of its own)."""
        ffi = k.ffi
        t, mm = self.t, self.mm
        k.mmap(area, self.size, k.PROT_READ | k.PROT_WRITE | k.PROT_EXEC,
               k.MAP_PRIVATE | k.MAP_ANONYMOUS | k.MAP_FIXED_NOREPLACE)
        ffi.memmove(ffi.cast("char *", area), blob, len(blob))
        at = {n: area + o for n, o in self.off.items()}
        put = lambda name, data: ffi.memmove(ffi.cast("char *", at[name]), data, len(data))
        a = ffi.cast("struct rst_args *", at["args"])
        a.magic, a.version = RST_MAGIC, RST_VERSION
        a.old_rseq_ptr = k.lib.lxc_self_rseq_ptr()
        a.old_rseq_len = k.lib.lxc_self_rseq_size()
        a.old_rseq_sig = RSEQ_SIG
        put("unmap", b"".join(struct.pack("<QQ", s, e) for s, e in unmap))
        a.unmap, a.n_unmap = at["unmap"], len(unmap)
        put("moves", b"".join(struct.pack("<QQQ", s, d, n) for s, d, n in moves))
        a.moves, a.n_moves = at["moves"], len(moves)

        for name in ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
                     "arg_start", "arg_end", "env_start", "env_end"):
            setattr(a.mm, name, getattr(mm, name))
        put("auxv", struct.pack(f"<{len(mm.auxv)}Q", *mm.auxv))
        a.mm.auxv, a.mm.auxv_size = at["auxv"], 8 * len(mm.auxv)
        a.mm.exe_fd = exe_fd & 0xFFFFFFFF            # -1: keep the exe link

        put("sigactions", b"".join(struct.pack("<QQQQ", s.handler, s.flags, s.restorer, s.mask)
                                   for s in t.sigactions))
        a.sigactions = at["sigactions"]
        for i, it in enumerate(t.itimers):
            a.itimers[i] = (it.interval_sec, it.interval_usec, it.value_sec, it.value_usec)
        timers = ffi.cast("struct rst_posix_timer *", at["timers"])
        for i, pt in enumerate(t.posix_timers):
            timers[i] = (pt.id, pt.clock_id, pt.sigev_notify, pt.sigev_signo, pt.sigev_value,
                         inner.get(pt.notify_tid, pt.notify_tid), 0,
                         pt.interval_sec, pt.interval_nsec, pt.value_sec, pt.value_nsec)
        a.timers, a.n_timers = at["timers"], len(t.posix_timers)

        threads = ffi.cast("struct rst_thread *", at["threads"])
        siginfo_at = at["siginfo"]
        for i, th in enumerate(t.threads):
            r = threads[i]
            r.tid = inner.get(th.tid, th.tid)
            r.outer_tid = th.tid if th.tid in inner else 0
            r.amx = int(task_mod.uses_amx(th))
            r.stack_top = at["stacks"] + THREAD_STACK * (i + 1) - 64
            r.clear_tid, r.robust_list, r.robust_len = th.clear_tid, th.robust_list, th.robust_len
            r.altstack_sp, r.altstack_size, r.altstack_flags = th.altstack_sp, th.altstack_size, th.altstack_flags
            r.pdeath_signal = th.pdeath_signal
            r.rseq_ptr, r.rseq_len, r.rseq_sig, r.rseq_cs = th.rseq_ptr, th.rseq_len, th.rseq_sig, th.rseq_cs
            data = b"".join(th.siginfo)
            ffi.memmove(ffi.cast("char *", siginfo_at), data, len(data))
            r.siginfo, r.n_siginfo = siginfo_at, len(th.siginfo)
            siginfo_at += len(data)
            comm = th.comm.encode()[:15]
            ffi.memmove(r.comm, comm + b"\0", len(comm) + 1)
        a.threads, a.n_threads = at["threads"], len(t.threads)
        put("shared_siginfo", b"".join(t.shared_siginfo))
        a.shared_siginfo, a.n_shared_siginfo = at["shared_siginfo"], len(t.shared_siginfo)

        a.personality, a.umask = t.personality, t.umask
        a.child_subreaper, a.dumpable = int(t.child_subreaper), t.dumpable
        c = t.creds
        a.no_new_privs = int(c.no_new_privs)
        a.creds.uid, a.creds.euid, a.creds.suid, a.creds.fsuid = c.uids
        a.creds.gid, a.creds.egid, a.creds.sgid, a.creds.fsgid = c.gids
        a.creds.cap_inh, a.creds.cap_prm, a.creds.cap_eff = c.cap_inh, c.cap_prm, c.cap_eff
        a.creds.cap_bnd, a.creds.cap_amb, a.creds.securebits = c.cap_bnd, c.cap_amb, c.securebits
        put("groups", struct.pack(f"<{len(c.groups)}I", *c.groups))
        a.creds.groups, a.creds.ngroups = at["groups"], len(c.groups)
        fds = sorted(f.fd for f in t.fds)
        put("fds", struct.pack(f"<{len(fds)}i", *fds))
        a.keep_fds, a.n_keep_fds = at["fds"], len(fds)
        a.thp_disable = int(t.thp_disabled)
        return at["args"]


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a
