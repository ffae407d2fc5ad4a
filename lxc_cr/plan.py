"""Plans: the one thing the engine sees.

Every entrypoint (command line, later RPC and container configs) turns its
input into a DumpPlan or a RestorePlan; the engine never reads argv.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .engine.errors import PlanError


@dataclass(frozen=True)
class DumpPlan:
    pid: int
    images_dir: str
    leave_running: bool = False
    shell_job: bool = False
    file_locks: bool = False
    ext_unix_sk: bool = False       # unix sockets whose peer is outside the tree are allowed
    tcp_established: bool = False   # established TCP connections are dumped (repair mode)
    skip_in_flight: bool = False    # half-open TCP connections are left out, not refused
    check_only: bool = False        # list what would block a dump; freeze nothing
    freeze_cgroup: str | None = None  # freeze this cgroup (v1 freezer or cgroup2) before seizing
    log_file: str | None = None
    verbosity: int = 2


@dataclass(frozen=True)
class RestorePlan:
    images_dir: str
    detach: bool = False
    pidfile: str | None = None
    shell_job: bool = False
    restore_sibling: bool = False
    file_locks: bool = False
    ext_unix_sk: bool = False
    tcp_established: bool = False
    log_file: str | None = None
    verbosity: int = 2


def dump_plan(args) -> DumpPlan:
    if args.tree is None:
        raise PlanError("dump needs -t PID")
    if args.tree <= 0 or not os.path.exists(f"/proc/{args.tree}"):
        raise PlanError(f"no process with PID {args.tree}")
    return DumpPlan(pid=args.tree, images_dir=_images_dir(args), leave_running=args.leave_running,
                    shell_job=args.shell_job, file_locks=args.file_locks, ext_unix_sk=args.ext_unix_sk,
                    tcp_established=args.tcp_established, skip_in_flight=args.skip_in_flight,
                    check_only=args.check_only, freeze_cgroup=args.freeze_cgroup, log_file=_log_path(args, "dump.log"),
                    verbosity=args.verbosity)


def restore_plan(args) -> RestorePlan:
    return RestorePlan(images_dir=_images_dir(args), detach=args.restore_detached,
                       pidfile=_pidfile(args), shell_job=args.shell_job,
                       restore_sibling=args.restore_sibling, file_locks=args.file_locks,
                       ext_unix_sk=args.ext_unix_sk, tcp_established=args.tcp_established,
                       log_file=_log_path(args, "restore.log"), verbosity=args.verbosity)


def _images_dir(args) -> str:
    return os.path.abspath(args.images_dir or ".")


def _log_path(args, default: str) -> str | None:
    """-o names a file inside the image directory unless it is absolute (as in CRIU); '-' is stderr."""
    name = args.log_file or default
    if name == "-":
        return None
    return name if os.path.isabs(name) else os.path.join(_images_dir(args), name)


def _pidfile(args) -> str | None:
    if not args.pidfile:
        return None
    return args.pidfile if os.path.isabs(args.pidfile) else os.path.abspath(args.pidfile)
