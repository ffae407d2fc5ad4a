"""The netlink worker: pyroute2's part of a dump or restore, in a child process that
imports pyroute2 while the parent does everything else.

Importing pyroute2 takes 70-100 ms on this project's machine (it loads asyncio,
multiprocessing and more): as long as a whole container checkpoint should take.  So a
dump or restore of a tree with a network namespace of its own calls start() first: a
forked child imports pyroute2 on the other CPU while its parent imports the engine,
freezes the tree, reads images.  The parent hands it the netlink work as calls of
module-level functions: call(f, *args) (or submit(), whose result() is taken later)
runs f in the worker, in the network namespace the caller is in at that moment (sent
along as an fd), and returns what f returned, or raises what it raised.  A function
returns descriptors by returning Fds(...): they come back over SCM_RIGHTS and the caller
owns them.  Whatever f keeps in its module stays in the worker for later calls (the
host-side devices of a restore, to undo).  Without a started worker, call() and submit()
run f in the caller: a plain process tree never pays for the fork.

The worker is single-threaded and answers in order; it ends when the parent closes the
socket (stop()) or dies (PDEATHSIG).
"""
from __future__ import annotations

import array
import importlib
import os
import pickle
import signal
import socket
import struct

from . import kernel as k
from .errors import CRError, fault_point

HEADER = struct.Struct("<QI")            # payload length, number of fds
MAX_FDS = 16

_worker: "_Worker | None" = None


class Fds(tuple):
    """What a worker function returns when its result is descriptors."""


class WorkerError(CRError):
    """The worker died, or raised something that is not ours to pass on."""


def start() -> None:
    """Fork the worker now (once per process)."""
    global _worker
    if _worker is None:
        _worker = _Worker()


def stop() -> None:
    """End the worker (if any) and wait for it."""
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


def pid() -> int | None:
    """The worker's PID, for a parent that waits for any child (engine/restoring.py)."""
    return _worker.pid if _worker is not None else None


def call(func, *args):
    return submit(func, *args).result()


def submit(func, *args) -> "_Pending | _Done":
    if _worker is None:
        try:
            return _Done(func(*args), None)
        except Exception as e:
            return _Done(None, e)
    return _worker.submit(func, *args)


class _Done:
    def __init__(self, value, error):
        self.value, self.error = value, error

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


class _Pending:
    def __init__(self, worker: "_Worker", seq: int):
        self.worker, self.seq = worker, seq

    def result(self):
        return self.worker.answer(self.seq).result()


class _Worker:
    def __init__(self):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            mine.close()
            _serve(theirs)
        theirs.close()
        self.sock = mine
        self.sent = 0
        self.answers: dict[int, _Done] = {}
        self.received = 0

    def submit(self, func, *args) -> _Pending:
        ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _send(self.sock, (func.__module__, func.__qualname__, args), [ns])
        except OSError as e:
            raise WorkerError(f"the netlink worker is gone: {e.strerror}") from None
        finally:
            os.close(ns)
        self.sent += 1
        return _Pending(self, self.sent)

    def answer(self, seq: int) -> _Done:
        while self.received < seq:
            try:
                message, fds = _receive(self.sock)
            except (OSError, EOFError) as e:
                raise WorkerError(f"the netlink worker's answer was cut short: {e}") from None
            if message is None:
                raise WorkerError("the netlink worker died before it answered")
            ok, value = message
            self.received += 1
            if ok and isinstance(value, Fds):
                value = Fds(fds)
            self.answers[self.received] = _Done(value, None) if ok else _Done(None, value)
        return self.answers.pop(seq)

    def close(self) -> None:
        self.sock.close()
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _serve(sock: socket.socket) -> None:
    """The worker's life: import pyroute2, then run calls until the parent hangs up."""
    code = 0
    try:
        k.prctl(k.PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _import_pyroute2()
        fault_point("netlink-worker")       # the worker dies before it answers
        while True:
            message, fds = _receive(sock)
            if message is None:
                break
            module, name, args = message
            try:
                if fds:
                    k.syscall("setns", fds[0], k.CLONE_NEWNET)
                value = getattr(importlib.import_module(module), name)(*args)
                sent = list(value) if isinstance(value, Fds) else []
                _send(sock, (True, value), sent)
                for fd in sent:             # the caller's now
                    os.close(fd)
            except Exception as e:
                _send(sock, (False, e if isinstance(e, (CRError, OSError)) else
                             WorkerError(f"{type(e).__name__}: {e}")), [])
            finally:
                for fd in fds:
                    os.close(fd)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _import_pyroute2() -> None:
    """The modules of pyroute2 the engine uses (engine code imports them by their module path),
    without the package's __init__, which also loads NDB, IPDB, conntrack and nftables: about
    40 ms more on this machine, in a process whose point is to be done early."""
    import importlib.util
    import sys
    import types
    spec = importlib.util.find_spec("pyroute2")
    package = types.ModuleType("pyroute2")
    package.__path__, package.__spec__ = spec.submodule_search_locations, spec
    sys.modules.setdefault("pyroute2", package)
    import pyroute2.iproute.linux  # noqa: F401
    import pyroute2.netlink.diag  # noqa: F401


def _send(sock: socket.socket, message, fds: list[int]) -> None:
    data = pickle.dumps(message)
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([HEADER.pack(len(data), len(fds))], ancillary)
    sock.sendall(data)


def _receive(sock: socket.socket):
    """(message, fds), or (None, []) at the end of the stream."""
    head, ancillary, _, _ = sock.recvmsg(HEADER.size, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", data[:len(data) - len(data) % 4]))
    if len(head) < HEADER.size:
        head += _exactly(sock, HEADER.size - len(head)) if head else b""
    if not head:
        return None, []
    size, _ = HEADER.unpack(head)
    return pickle.loads(_exactly(sock, size)), fds


def _exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise EOFError("the netlink worker's socket closed mid-message")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
