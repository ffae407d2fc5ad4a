"""The command line: `lxc-cr` and, through hooks/criu, a `criu`-compatible one.

Spellings follow CRIU (dump -t PID -D DIR -o LOG -v4 --leave-running ...).
Anything we do not implement is refused with one line, never ignored.
Errors: one line on stderr, exit status 1; details go to the log file.
"""
from __future__ import annotations

import os
import sys

from . import CRIU_COMPAT_VERSION, __version__
from .engine import CGROUP_MODES

USAGE = """\
usage: lxc-cr dump -t PID -D DIR [-o LOG] [-v[N]] [--leave-running] [--shell-job] [--file-locks]
                  [--ext-unix-sk] [--tcp-established] [--skip-in-flight] [--check-only]
                  [--freeze-cgroup CGROUP] [--ghost-limit SIZE] [--ext-mount-map MNT:KEY|auto]...
                  [--cgroup-root [CTRL:]/PATH]... [--manage-cgroups[=MODE]] [--policy FILE]...
       lxc-cr restore -D DIR [-d] [--pidfile FILE] [-o LOG] [-v[N]] [--shell-job] [--restore-sibling]
                  [--file-locks] [--ext-unix-sk] [--tcp-established] [--external DEV...]
                  [--root DIR] [--ext-mount-map KEY:PATH]... [--join-ns NS:PID|PATH]...
                  [--cgroup-root [CTRL:]/PATH]...
                  [--manage-cgroups[=MODE]] [--policy FILE]...
       lxc-cr plan -t PID [dump options]
       lxc-cr plan --lxc NAME [-D DIR] [--leave-running]
       lxc-cr pre-dump -t PID -D DIR [dump options]
       lxc-cr check [--feature NAME]
       lxc-cr show DIR [IMAGE]
       lxc-cr swrk FD           (CRIU's RPC on socket FD, as runc, crun and podman use it)
       lxc-cr --version

Checkpoint a process tree into a directory of images, and restore it later with the
same PIDs, memory, registers, threads, signals, timers and open files.

dump options:
  -t, --tree PID           root of the process tree to checkpoint
  -D, --images-dir DIR     image directory (created 0700; must not hold a dump)
  -R, --leave-running      leave the tree running after the dump (default: kill it)
  -j, --shell-job          the tree is a shell job: its terminal and session are outside it
  -l, --file-locks         dump and restore file locks (without it, a held lock is refused)
  --ext-unix-sk            allow unix sockets whose peer is outside the tree
  --tcp-established        dump established TCP connections (TCP repair mode)
  --skip-in-flight         leave out half-open TCP connections instead of refusing them
  --check-only             list everything that would block a dump; freeze nothing, write nothing
  --freeze-cgroup CGROUP   freeze this cgroup (cgroup2 directory or v1 freezer) before seizing
  --ghost-limit SIZE       largest unlinked open file whose content is saved (default 64M)
  --external KEY           a file outside the tree, not dumped: tty[RDEV:DEV] (hex; LXC's console),
                           pipe:[INO], socket:[INO] or a path; restore needs --inherit-fd for it
  --external net[INO]:KEY, --external pid[INO]:KEY
                           the tree's network (PID) namespace, inode INO, is the caller's: not
                           dumped; restore joins the namespace given as --inherit-fd fd[N]:KEY
  --ext-mount-map MNT:KEY  the tree's mount at MNT is external, named KEY (restore maps KEY)
  --ext-mount-map auto     also any bind of a file system mounted outside is external
                           (same: --external mnt[]; --external mnt[MNT]:KEY as MNT:KEY)
  --enable-external-sharing, --enable-external-masters
                           allow mounts shared with, or slaves of, mounts outside the tree
restore options:
  -D, --images-dir DIR     image directory of a complete dump
  -d, --restore-detached   leave the restored tree running and exit (default: wait for it)
  --pidfile FILE           write the restored root PID to FILE
  -j, --shell-job          restore a shell job onto this terminal and session
  --restore-sibling        make the restored root a sibling of lxc-cr (a child of its parent)
  --external veth[IF]:HOST[@BRIDGE]
                           the tree's veth IF: its host end is made as HOST, on BRIDGE
  --external macvlan[IF]:LINK
                           the tree's macvlan IF is made on host device LINK
  --external netdev[IF]:DEV
                           host device DEV is moved into the tree's namespace as IF
  --veth-pair IF=HOST[@BRIDGE]
                           older spelling of --external veth[IF]:HOST[@BRIDGE]
  --file-locks, --ext-unix-sk, --tcp-established
                           needed again at restore when the dump used them
  --inherit-fd fd[N]:KEY   every file of the dump with that key (see --external) is our fd N;
                           an external namespace's KEY: fd N is that namespace (joined)
  --root DIR               the tree's root mount (its own mount namespace is rebuilt under DIR);
                           default: where its root mount lay when dumped
  --ext-mount-map KEY:PATH the external mount KEY is bound from PATH (--external mnt[KEY]:PATH);
                           console:PATH binds LXC's console (empty PATH: none)
  --join-ns NS:PID|PATH    join that existing namespace (ipc, uts, net or mnt; PID:
                           /proc/PID/ns/NS) instead of making one: its dumped contents (SysV
                           objects, host name, devices, mounts) are not made, and nothing in it
                           is changed (repeatable)
cgroup options (dump and restore):
  --cgroup-root [CTRL[,CTRL...]:]/PATH
                           dump: the tree's root cgroup in those hierarchies (all without CTRL),
                           whose cgroups below are saved with their properties; restore: put the
                           tree there instead of below its dumped root (repeatable)
  --manage-cgroups[=MODE]  what restore does with cgroups (default soft): ignore (nothing),
                           none (join existing ones), props (join existing ones, set properties),
                           soft (create missing ones, set properties of those created),
                           full (create missing ones, set all properties), strict (create all,
                           none may exist)
plan:
  prints, as YAML, what a dump with these options would do: first everything that would
  block it, then every setting with where it came from (built-in default, policy file and
  line, command line). Freezes nothing.  With --lxc NAME: the checkpoint lxc-checkpoint
  would run for that container (the criu command line LXC passes, the container's config,
  cgroups, network devices and mounts), and what LXC's restore would trip over.
pre-dump:
  memory changes are not tracked, so nothing is copied ahead: checks that a dump would work
  and says so in its log (check --feature mem_dirty_track answers no).
CRIU's options as runtimes pass them (LXC: lxc-checkpoint; see docs/SUPPORTED.md) are
accepted: honoured where they apply (--action-script, --lsm-profile apparmor:unconfined),
logged where they change nothing here (--link-remap, --force-irmap, --enable-fs, ...),
refused where ignoring them would lose data (--page-server).
common options:
  --policy FILE            policy file to apply (repeatable; default: /etc/lxc-cr/*.yaml);
                           see configs/README.md. The command line wins over policies.
  -o, --log-file FILE      log file, relative to the image directory (default dump.log /
                           restore.log; '-' for stderr)
  -v[N], --verbosity N     log level 0-4 (4: debug); -v alone means 4
"""

LEVELS = {0: 40, 1: 40, 2: 30, 3: 20, 4: 10}


class UsageError(Exception):
    pass


def _parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise UsageError(message)

    p = Parser(prog="lxc-cr", add_help=False, allow_abbrev=False)
    p.add_argument("command", nargs="?")
    p.add_argument("operands", nargs="*")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-t", "--tree", type=int)
    p.add_argument("-D", "--images-dir")
    p.add_argument("-o", "--log-file")
    p.add_argument("-v", "--verbosity", nargs="?", const=4, default=2, type=_level)
    p.add_argument("-R", "--leave-running", action="store_true")
    p.add_argument("-j", "--shell-job", action="store_true")
    p.add_argument("-l", "--file-locks", action="store_true")
    p.add_argument("-d", "--restore-detached", action="store_true")
    p.add_argument("--pidfile")
    p.add_argument("--restore-sibling", action="store_true")
    p.add_argument("--ext-unix-sk", action="store_true")
    p.add_argument("--tcp-established", action="store_true")
    p.add_argument("--skip-in-flight", action="store_true")
    p.add_argument("--check-only", action="store_true")
    p.add_argument("--freeze-cgroup")
    p.add_argument("--ghost-limit", type=_size)
    p.add_argument("--policy", action="append")
    p.add_argument("--external", action="append", default=[])
    p.add_argument("--veth-pair", action="append", default=[])
    p.add_argument("-V", "--version", action="store_true")
    p.add_argument("--lxc")
    p.add_argument("--cgroup-root", action="append", default=[])
    p.add_argument("--manage-cgroups", nargs="?", const="soft", choices=CGROUP_MODES)
    p.add_argument("--root")
    p.add_argument("--ext-mount-map", action="append", default=[])
    from . import criu_opts
    criu_opts.add_options(p)         # the rest of CRIU's options as runtimes pass them
    return p


def _level(text: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 4:
        return int(text)
    if set(text) == {"v"}:           # -vvv
        return min(4, 2 + len(text) + 1)
    raise UsageError(f"bad verbosity {text!r} (0-4)")


def _size(text: str) -> int:
    from .policy import PolicyError, parse_size
    try:
        return parse_size(text, "--ghost-limit")
    except PolicyError as e:
        raise UsageError(str(e)) from None


def run() -> None:
    """The `lxc-cr` command and hooks/criu: main(), then a quick exit.  Python's own teardown
    takes ~5 ms here, and nothing of ours needs it: every file is closed where it is written;
    the standard streams and the log are flushed here."""
    code = main()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    as_criu = os.environ.get("LXC_CR_PERSONA") == "criu"
    if argv[:1] in (["--version"], ["-V"]):
        # runtimes parse this line: LXC wants exactly "Version: X.Y.Z"
        _out(f"Version: {CRIU_COMPAT_VERSION}\n" if as_criu else f"lxc-cr {__version__}\n")
        return 0
    if argv[:1] == ["swrk"]:
        from .swrk import main as swrk
        return swrk(argv[1:])
    try:
        args = _parser().parse_args(argv)
    except UsageError as e:
        return _fail(f"{e} (see lxc-cr --help)")
    if args.help or not args.command:
        _out(USAGE)
        return 0 if args.help else 1
    handler = COMMANDS.get(args.command)
    if handler is None:
        return _fail(f"unknown command {args.command!r} (see lxc-cr --help)")
    return _guarded(lambda: handler(args))


def _guarded(work) -> int:
    """Run work(); every error becomes one line on stderr and exit status 1."""
    from .engine.errors import CRError
    try:
        return work()
    except CRError as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Abandoned:
        return _fail("lxc-cr was killed; the dump was abandoned and the tree released")
    except Exception as e:  # a bug: the log gets the traceback, the terminal one line
        import logging
        logging.getLogger("lxc_cr").exception("internal error")
        return _fail(f"internal error: {type(e).__name__}: {e}")


def _out(text: str) -> None:
    if sys.stdout is not None:
        sys.stdout.write(text)
        sys.stdout.flush()


def _fail(message: str) -> int:
    import logging
    logger = logging.getLogger("lxc_cr")
    if logger.handlers:
        logger.error("%s", message)
    if sys.stderr is not None:          # LXC runs us with fd 2 closed
        sys.stderr.write(f"lxc-cr: error: {message}\n")
    return 1


def _no_operands(args, command: str) -> None:
    from .engine.errors import PlanError
    if args.operands:
        raise PlanError(f"{command}: unexpected argument {args.operands[0]!r}")


def _setup_log(path: str | None, verbosity: int) -> None:
    import logging
    logger = logging.getLogger("lxc_cr")
    logger.setLevel(LEVELS[verbosity])
    logger.propagate = False
    if path is None:
        if sys.stderr is not None:
            handler = logging.StreamHandler(sys.stderr)
        else:
            return
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(name)s %(levelname)s: %(message)s",
                                           "%H:%M:%S"))
    logger.addHandler(handler)
    logging.getLogger().handlers = [handler]


def _caller(args):
    from .lxc_plan import caller
    return caller(args)


def cmd_dump(args) -> int:
    _no_operands(args, "dump")
    _refuse(args, ("restore_detached", "pidfile", "restore_sibling", "inherit_fd", "veth_pair", "join_ns"))
    if args.check_only:
        from .plan import dump_plan
        return _check_only(dump_plan(args, *_caller(args)))
    return _supervised(lambda: _dump(args))


def _dump(args) -> None:
    from . import engine
    from .plan import dump_plan
    plan = dump_plan(args, *_caller(args))
    from .engine.images import ImageDir
    ImageDir.for_dump(plan.images_dir).close()     # checks the directory before the log goes in it
    _setup_log(plan.log_file, plan.verbosity)
    _log_notes(args)
    import logging
    if logging.getLogger("lxc_cr").isEnabledFor(logging.DEBUG):
        logging.getLogger("lxc_cr").debug("plan: %s", plan)
    engine.dump(plan)


def cmd_pre_dump(args) -> int:
    """CRIU's pre-dump copies memory ahead while the tree runs.  Without dirty-memory tracking
    there is nothing to copy ahead: check that a dump would work, log why nothing was copied."""
    from .plan import dump_plan
    _no_operands(args, "pre-dump")
    _refuse(args, ("restore_detached", "pidfile", "restore_sibling", "inherit_fd", "leave_running", "veth_pair",
                   "join_ns"))
    plan = dump_plan(args, *_caller(args))
    from .engine.dumping import check_only
    blockers = check_only(plan)
    os.makedirs(plan.images_dir, mode=0o700, exist_ok=True)
    _setup_log(plan.log_file, plan.verbosity)
    _log_notes(args)
    if blockers:
        _raise_blocked(blockers)
    import logging
    logging.getLogger("lxc_cr").info("pre-dump: memory changes are not tracked, nothing is copied ahead; "
                                     "the dump will copy all memory")
    return 0


def _raise_blocked(blockers: list[str]) -> None:
    from .engine.errors import UnsupportedError
    import logging
    for line in blockers:
        logging.getLogger("lxc_cr").error("%s", line)
    raise UnsupportedError(blockers[0] + (f" (and {len(blockers) - 1} more in the log)" if len(blockers) > 1 else ""))


def _log_notes(args) -> None:
    import logging
    from . import criu_opts
    for line in criu_opts.notes(args):
        logging.getLogger("lxc_cr").info("%s", line)


def _check_only(plan) -> int:
    from .engine.dumping import check_only
    blockers = check_only(plan)
    for line in blockers:
        _out(f"{line}\n")
    if not blockers:
        _out(f"nothing blocks a dump of {plan.pid}\n")
    return 1 if blockers else 0


class Abandoned(BaseException):
    """The process that started the dump is gone: roll back and stop."""


def _supervised(work) -> int:
    """Run work() in a child, so that killing this process (even with SIGKILL) makes
    the child roll back: release the tree unchanged and remove partial images."""
    import signal
    from .engine import kernel
    parent = os.getpid()
    pid = os.fork()
    if pid:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                return os.waitstatus_to_exitcode(status) if not os.WIFSIGNALED(status) else 1
            except InterruptedError:
                continue

    def abandoned(*_):
        raise Abandoned()

    def checked_work():
        if os.getppid() != parent:
            raise Abandoned()
        work()
        return 0
    signal.signal(signal.SIGTERM, abandoned)
    kernel.prctl(kernel.PR_SET_PDEATHSIG, signal.SIGTERM)
    code = 1
    try:
        code = _guarded(checked_work)
    finally:
        sys.stdout.flush()
        os._exit(code)


def cmd_plan(args) -> int:
    """lxc-cr plan -t PID | --lxc NAME: what a dump would do, blockers first; freezes nothing."""
    from .engine.dumping import check_only
    from .plan import dump_plan, to_yaml
    _no_operands(args, "plan")
    _refuse(args, ("restore_detached", "pidfile", "restore_sibling", "check_only", "veth_pair", "join_ns"))
    document = {}
    if args.lxc:
        from .lxc_plan import report
        document, plan = report(args)
    else:
        plan = dump_plan(args)
    document = {"blocking": check_only(plan), **document,
                "dump": {key: value for key, value in plan._asdict().items() if key != "origins"},
                "settings": {key: {"value": s.value, "from": s.origin} for key, s in plan.origins.items()}}
    _out(to_yaml(document))
    return 0


def cmd_restore(args) -> int:
    from . import engine
    _no_operands(args, "restore")
    _refuse(args, ("tree", "leave_running", "skip_in_flight", "check_only", "freeze_cgroup", "ghost_limit"))
    from .plan import restore_plan
    plan = restore_plan(args, *_caller(args))
    if not os.path.isdir(plan.images_dir):
        from .engine.errors import PlanError
        raise PlanError(f"image directory {plan.images_dir} does not exist")
    _setup_log(plan.log_file, plan.verbosity)
    _log_notes(args)
    result = engine.restore(plan)
    return 0 if plan.detach or plan.restore_sibling else result


def _refuse(args, other_commands_options) -> None:
    """Options of the other command are mistakes here, not something to ignore."""
    from . import criu_opts
    from .engine.errors import PlanError
    criu_opts.refuse(args, args.command)
    for name in other_commands_options:
        if getattr(args, name):
            raise PlanError(f"option --{name.replace('_', '-')} does not apply to {args.command}")


def cmd_check(args) -> int:
    from .engine.check import report
    _no_operands(args, "check")
    if args.feature:
        return _check_feature(args.feature)
    from . import lxc_check
    from itertools import chain
    ok = True
    for name, present, detail in chain(report(), lxc_check.report()):
        _out(f"{'yes' if present else 'NO ':3}  {name}{': ' + detail if detail else ''}\n")
        ok &= present
    return 0 if ok else 1


# CRIU's `check --feature NAME` (LXC's feature check): what we do not have answers no
FEATURES = {
    "mem_dirty_track": (False, "memory changes are not tracked (no incremental dumps)"),
    "uffd-noncoop": (False, "lazy restore of memory (userfaultfd) is not implemented"),
    "uffd": (False, "lazy restore of memory (userfaultfd) is not implemented"),
}


def _check_feature(name: str) -> int:
    from .engine.errors import PlanError
    if name not in FEATURES:
        raise PlanError(f"unknown feature {name!r} (known: {', '.join(FEATURES)})")
    present, why = FEATURES[name]
    _out(f"{name} is {'supported' if present else 'not supported'}{'' if present else ': ' + why}\n")
    return 0 if present else 1


def cmd_show(args) -> int:
    from .engine.show import show
    from .engine.errors import PlanError
    if not args.operands and not args.images_dir:
        raise PlanError("show needs an image directory")
    directory = args.operands[0] if args.operands else args.images_dir
    names = args.operands[1:]
    _out(show(directory, names))
    return 0


COMMANDS = {"dump": cmd_dump, "pre-dump": cmd_pre_dump, "restore": cmd_restore, "plan": cmd_plan,
            "check": cmd_check, "show": cmd_show}

if __name__ == "__main__":
    sys.exit(main())
