"""Actions: shell commands a plan asks to run at fixed points of a dump or a restore.

Points:
    pre_dump      before anything is frozen; a failure stops the dump, nothing changed
    post_dump     the images are written and the tree is still frozen; a failure rolls
                  the dump back (images removed, tree resumed)
    post_restore  the tree runs again; a failure is logged, the tree keeps running
The command runs under /bin/sh with LXC_CR_ACTION (the point, as in pre-dump),
LXC_CR_PID and LXC_CR_IMAGES_DIR in its environment; its output goes to the log,
never to our stdout (LXC reads that after we exit, at most 4 KiB).
"""
from __future__ import annotations

import logging
import os
import subprocess

from .errors import ActionError

log = logging.getLogger("lxc_cr.actions")


def run(plan, point: str, pid: int) -> None:
    command = plan.actions.get(point)
    if not command:
        return
    env = dict(os.environ, LXC_CR_ACTION=point.replace("_", "-"), LXC_CR_PID=str(pid),
               LXC_CR_IMAGES_DIR=plan.images_dir)
    log.info("%s action: %s", point, command)
    try:
        done = subprocess.run(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace")
    except OSError as e:
        raise ActionError(f"{point} action {command!r} could not start: {e.strerror}") from None
    for line in (done.stdout + done.stderr).splitlines():
        log.info("%s action: | %s", point, line)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ActionError(f"{point} action {command!r} failed: {last[0]}")
