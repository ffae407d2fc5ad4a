"""Files outside the tree, named by the caller at dump: `--external KEY` (LXC's console).

A file whose key (engine/inherit.py: `tty[RDEV:DEV]` for a terminal, else its
/proc/PID/fd link) the plan lists in DumpPlan.external_files belongs to the runtime:
it is not dumped, its master need not be in the tree, and it may be the controlling
terminal of a session of the tree.  It becomes a file of kind "external", which
restore cannot open by itself: the caller hands it back with `--inherit-fd
fd[N]:KEY` (engine/inherit.py), and a session that had it as controlling terminal
takes it again (take_ctty).
"""
from __future__ import annotations

import os

from .. import kernel as k
from ..errors import ImageError, RestoreError
from ..inherit import key_of
from .external_pb2 import External as MESSAGE


NAME = "external"


def _external_keys(plan) -> tuple:
    return getattr(plan, "external_files", ())


def claims(ctx, link: str, st: os.stat_result) -> bool:
    """Is this file one the plan names as outside the tree?"""
    keys = _external_keys(ctx.plan)
    return bool(keys) and key_of(link, st) in keys


def matches(link: str, st: os.stat_result) -> bool:
    return False        # never by type: only through claims()


# --- dump ------------------------------------------------------------------------------------

def dump(ctx, f):
    return MESSAGE(key=key_of(f.link, f.st), path=f.link)


def is_ctty(ctx, pid: int, tty_nr: int, sid: int) -> bool:
    """Is the task's controlling terminal (tty_nr from /proc/PID/stat) an external terminal?
    If so, the session is recorded on that file, so that restore gives the terminal back."""
    for key in _external_keys(ctx.plan):
        if not key.startswith("tty[") or _tty_rdev(key) != tty_nr:
            continue
        if ctx.table is None:                   # --check-only: nothing to record
            return True
        for entry in ctx.table.entries:
            if entry.kind == NAME and entry.inherit_key == key:
                msg = MESSAGE()
                entry.detail.Unpack(msg)
                if sid not in msg.ctty_sessions:
                    msg.ctty_sessions.append(sid)
                    entry.detail.Pack(msg)
                return True
    return False


def _tty_rdev(key: str) -> int | None:
    try:
        return int(key[len("tty["):-1].split(":")[0], 16)
    except ValueError:
        return None


# --- restore ---------------------------------------------------------------------------------

def open(ctx, entry, msg) -> int:
    # reached only when no --inherit-fd names it
    raise ImageError(f"files.img: file {entry.id} ({msg.key}) was outside the tree at dump; "
                     f"restore needs --inherit-fd fd[N]:{msg.key}")


def take_ctty(ctx, pid: int) -> None:
    """In a session leader right after setsid(): an inherited terminal that was its
    controlling terminal becomes it again."""
    for entry in ctx.files.values():
        if entry.kind != NAME or entry.id not in ctx.inherited:
            continue
        msg = MESSAGE()
        entry.detail.Unpack(msg)
        if pid in msg.ctty_sessions:
            try:
                k.ioctl_arg(ctx.opened[entry.id], k.TIOCSCTTY, 0, "TIOCSCTTY")
            except OSError as e:
                raise RestoreError(f"process {pid}: cannot take back its controlling terminal "
                                   f"{msg.key}: {e.strerror}") from None
