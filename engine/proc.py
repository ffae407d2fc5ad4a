"""Readers for /proc: the cheapest honest source of most task state.

Pure parsing, no ptrace.  Every function takes a PID (or TID) and returns
plain Python values; a vanished task raises ProcessLookupError.
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        raise ProcessLookupError(path) from None


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ProcessLookupError(path) from None


def exists(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


class Stat(NamedTuple):
    pid: int
    comm: str
    state: str
    ppid: int
    pgid: int
    sid: int
    tty_nr: int
    tpgid: int              # the foreground group of its controlling terminal
    nice: int
    num_threads: int
    start_code: int
    end_code: int
    start_stack: int
    start_data: int
    end_data: int
    start_brk: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    exit_code: int


def stat(pid: int, tid: int | None = None) -> Stat:
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    text = read_text(path)
    lpar, rpar = text.index("("), text.rindex(")")
    comm = text[lpar + 1:rpar]
    f = text[rpar + 2:].split()
    # f[0] is field 3 (state); field N is f[N - 3]
    g = lambda n: int(f[n - 3])
    return Stat(pid=int(text[:lpar]), comm=comm, state=f[0], ppid=g(4), pgid=g(5), sid=g(6),
                tty_nr=g(7), tpgid=g(8), nice=g(19), num_threads=g(20), start_code=g(26), end_code=g(27),
                start_stack=g(28), start_data=g(45), end_data=g(46), start_brk=g(47),
                arg_start=g(48), arg_end=g(49), env_start=g(50), env_end=g(51), exit_code=g(52))


def status(pid: int, tid: int | None = None) -> dict[str, str]:
    path = f"/proc/{pid}/task/{tid}/status" if tid else f"/proc/{pid}/status"
    out = {}
    for line in read_text(path).splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def tids(pid: int) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def children(pid: int) -> list[int]:
    """Children of every thread of pid (a child belongs to the thread that forked it)."""
    kids = []
    for tid in tids(pid):
        try:
            kids.extend(int(c) for c in read_text(f"/proc/{pid}/task/{tid}/children").split())
        except ProcessLookupError:
            pass
    return kids


class MapEntry(NamedTuple):
    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    vmflags: list[str]


_MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$")


def smaps(pid: int) -> list[MapEntry]:
    """VMAs with their VmFlags (only the header lines and VmFlags are kept)."""
    entries: list[MapEntry] = []
    for line in read_text(f"/proc/{pid}/smaps").splitlines():
        m = _MAPS_RE.match(line)
        if m:
            entries.append(MapEntry(int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16), m[5],
                                    int(m[6]), m[7], []))
        elif line.startswith("VmFlags:"):
            entries[-1].vmflags.extend(line.split()[1:])
    return entries


def maps(pid: int) -> list[MapEntry]:
    entries = []
    for line in read_text(f"/proc/{pid}/maps").splitlines():
        m = _MAPS_RE.match(line)
        if m:
            entries.append(MapEntry(int(m[1], 16), int(m[2], 16), m[3], int(m[4], 16), m[5],
                                    int(m[6]), m[7], []))
    return entries


def fdinfo(pid: int, fd: int) -> dict[str, str]:
    out = {}
    for line in read_text(f"/proc/{pid}/fdinfo/{fd}").splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key, value.strip())
    return out


def fds(pid: int) -> list[int]:
    try:
        return sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def fd_link(pid: int, fd: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None


def auxv(pid: int) -> list[int]:
    data = read_bytes(f"/proc/{pid}/auxv")
    import struct
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


def timers(pid: int) -> list[dict[str, str]]:
    """/proc/PID/timers: one dict per POSIX timer (ID, signal, notify, ClockID)."""
    out: list[dict[str, str]] = []
    for line in read_text(f"/proc/{pid}/timers").splitlines():
        key, _, value = line.partition(":")
        if key == "ID":
            out.append({})
        out[-1][key] = value.strip()
    return out


RLIM_INFINITY = 2**64 - 1


def limits(pid: int) -> list[tuple[int, int]]:
    """(soft, hard) for every resource, in resource-number order, from /proc/PID/limits.

    Reading them with prlimit() would need CAP_SYS_RESOURCE when the task has other uids."""
    out = []
    for line in read_text(f"/proc/{pid}/limits").splitlines()[1:]:
        soft, hard = line[26:47].strip(), line[47:68].strip()
        out.append(tuple(RLIM_INFINITY if v == "unlimited" else int(v) for v in (soft, hard)))
    return out
