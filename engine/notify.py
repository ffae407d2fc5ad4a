"""Notifications: the points of a dump and a restore where the caller is told, and may say no.

A plan may carry `notify`, a callable notify(script, pid) (built in lxc_cr/actions.py from the
plan's commands, chained with an RPC client's exchange).  pid is the tree's root whenever it
is known; the RPC client is sent it only where CRIU sends it.  The engine calls it at CRIU's action-script points, in CRIU's order
(runtimes.md §3.5): dump: pre-dump, network-lock, post-dump, network-unlock; restore:
pre-restore, setup-namespaces, post-setup-namespaces, post-restore, network-unlock,
pre-resume, post-resume.  The callable raises a CRError to veto: the dump is then rolled back
(the tree runs on untouched) and the restore undone (every task killed), like any failure.
network-unlock and post-resume come too late for a veto: their failure is logged.
"""
from __future__ import annotations

import logging

log = logging.getLogger("lxc_cr.notify")


def notify(plan, script: str, pid: int | None = None) -> None:
    callback = getattr(plan, "notify", None)
    if callback is not None:
        log.debug("notify %s%s", script, f" (pid {pid})" if pid else "")
        callback(script, pid)


def notify_no_veto(plan, script: str, pid: int | None = None) -> None:
    """A notification past the point where a veto could change anything (after a failure, or
    once the tree runs): its own failure is only logged, and must not hide the first one."""
    try:
        notify(plan, script, pid)
    except Exception as e:      # the caller may be gone
        log.warning("notify %s: %s", script, e)
