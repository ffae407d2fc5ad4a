"""`lxc-cr check`: does this kernel have what the engine relies on?  Each probe really tries it."""
from __future__ import annotations

import os

from . import kernel as k


def _probe(fn):
    try:
        detail = fn()
        return True, detail or ""
    except OSError as e:
        return False, e.strerror
    except Exception as e:  # a probe must never take the command down
        return False, str(e)


def _pidfd():
    fd = k.pidfd_open(os.getpid())
    try:
        os.close(k.pidfd_getfd(fd, 0))
    finally:
        os.close(fd)


def _pagemap_scan():
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        k.pagemap_scan(fd, 0, k.PAGE_SIZE, k.PAGE_IS_PRESENT)
    finally:
        os.close(fd)


def _kcmp():
    k.kcmp_file(os.getpid(), 0, os.getpid(), 0)


def _rseq():
    if not k.lib.lxc_self_rseq_ptr():
        raise OSError(0, "glibc registered no rseq area")


def _vdso():
    from .memory import vdso_layout
    return ", ".join(f"{n} {s // k.PAGE_SIZE}p" for n, s in vdso_layout())


def _timer_ids():
    # PR_TIMER_CREATE_RESTORE_IDS (6.15+): query mode 2 answers 0 or 1
    k.prctl(k.PR_TIMER_CREATE_RESTORE_IDS, 2)


def _blob():
    from .restorer import read_blob
    return f"{len(read_blob())} bytes"


def _xsave():
    from .task import xfeatures, xsave_size
    return f"XCR0 {xfeatures():#x}, {xsave_size()} bytes"


def _cgroup2_freeze():
    if not os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") and not os.path.exists("/sys/fs/cgroup/cgroup.procs"):
        raise OSError(0, "no cgroup2 hierarchy")


PROBES = [
    ("pidfd_open and pidfd_getfd", _pidfd),
    ("PAGEMAP_SCAN", _pagemap_scan),
    ("kcmp(KCMP_FILE)", _kcmp),
    ("rseq registration", _rseq),
    ("vDSO layout", _vdso),
    ("PR_TIMER_CREATE_RESTORE_IDS", _timer_ids),
    ("xsave state", _xsave),
    ("cgroup2 hierarchy (freezer)", _cgroup2_freeze),
    ("restorer blob", _blob),
]


def report(probes=None):
    """(name, present, detail) for each probe: these, or the engine's own."""
    for name, fn in probes or PROBES:
        ok, detail = _probe(fn)
        yield name, ok, detail
