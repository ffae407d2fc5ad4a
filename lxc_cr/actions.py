"""Commands run at the engine's notification points (engine/notify.py): a policy's actions and
CRIU's `--action-script`.

The engine knows one hook, plan.notify(script, pid), called at CRIU's points in CRIU's order
(pre-dump, network-lock, post-dump, ...; pre-restore, setup-namespaces, ..., post-resume).
Here that hook is built for a plan from its commands, and chained with an RPC client's own
(lxc_cr/rpc.py), so every kind of caller goes through the same points:

    policy pre_dump      at pre-dump: before anything is frozen; a failure stops the dump
    policy post_dump     at post-dump: images written, tree still frozen; a failure rolls back
    policy post_restore  at post-resume: the tree runs; a failure is logged
    --action-script      at every point, told which by CRTOOLS_SCRIPT_ACTION, as CRIU does

A command runs under /bin/sh with LXC_CR_ACTION / CRTOOLS_SCRIPT_ACTION (the point),
LXC_CR_PID / CRTOOLS_INIT_PID and LXC_CR_IMAGES_DIR / CRTOOLS_IMAGE_DIR set; its output goes
to the log, never to our stdout (LXC reads that after we exit, at most 4 KiB).
"""
from __future__ import annotations

import logging
import os
from typing import NamedTuple

from .engine.errors import ActionError

log = logging.getLogger("lxc_cr.actions")

POLICY_POINTS = {"pre_dump": "pre-dump", "post_dump": "post-dump", "post_restore": "post-resume"}


class Command(NamedTuple):
    point: str | None       # the notification it runs at; None: every one (an action script)
    shell: str
    source: str             # where it came from, for messages: "policy post_dump", "--action-script"


def from_settings(values: dict, names: tuple) -> list[Command]:
    return [Command(POLICY_POINTS[name], values[name], f"policy {name}") for name in names if values[name]]


def from_action_script(path: str | None) -> list[Command]:
    return [Command(None, _quote(os.path.abspath(path)), "--action-script")] if path else []


def notifier(commands: list[Command], pid: int | None, images_dir: str, then=None):
    """plan.notify for these commands, then `then` (an RPC client's hook), or None if neither."""
    if not commands:
        return then

    def notify(script: str, at_pid: int | None) -> None:
        for command in commands:
            if command.point in (None, script):
                _run(command, script, at_pid or pid, images_dir)
        if then is not None:
            then(script, at_pid)
    return notify


def chain(first, second):
    """Two hooks as one (an RPC client's, then the plan's commands'), either may be None."""
    if first is None or second is None:
        return first or second

    def both(script: str, pid: int | None) -> None:
        first(script, pid)
        second(script, pid)
    return both


def _run(command: Command, script: str, pid: int | None, images_dir: str) -> None:
    pid_text = str(pid or "")
    env = dict(os.environ, LXC_CR_ACTION=script, CRTOOLS_SCRIPT_ACTION=script, LXC_CR_PID=pid_text,
               CRTOOLS_INIT_PID=pid_text, LXC_CR_IMAGES_DIR=images_dir, CRTOOLS_IMAGE_DIR=images_dir)
    log.info("%s at %s: %s", command.source, script, command.shell)
    import subprocess
    try:
        done = subprocess.run(["/bin/sh", "-c", command.shell], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace")
    except OSError as e:
        raise ActionError(f"{command.source} ({command.shell!r}) could not start: {e.strerror}") from None
    for line in (done.stdout + done.stderr).splitlines():
        log.info("%s: | %s", command.source, line)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise ActionError(f"{command.source} ({command.shell!r}) failed at {script}: {last[0]}")


def _quote(path: str) -> str:
    import shlex
    return shlex.quote(path)
