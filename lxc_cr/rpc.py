"""The swrk RPC server: `criu swrk N`, as runc, crun (libcriu) and podman (go-criu) drive it.

The client made an AF_UNIX SOCK_SEQPACKET socketpair and passed us one end as fd N.  Each
packet holds one serialized message (rpc.proto): Request from the client, Response from us;
a packet is sized with recv(MSG_PEEK|MSG_TRUNC) before it is read.  Requests are parsed
without enforcing CRIU's `required` fields (go-criu's VERSION carries no opts).

A session (runtimes.md §3.3): DUMP and RESTORE run the notify exchange when opts ask for it
(engine/notify.py gives the points; the client's false answer, or its closed socket, vetoes),
then answer and end; VERSION, FEATURE_CHECK and CHECK answer and end; PRE_DUMP and
SINGLE_PRE_DUMP are refused (memory tracking does not exist yet, and FEATURE_CHECK says so);
anything else gets EMPTY/false.  The exit status is 0 after a successful final answer, else 1.
A bad request gets an error answer (cr_errno, cr_errmsg), never a traceback.

Every request becomes the DumpPlan or RestorePlan the command line would make (plan.py).
The flags go through plan.dump_plan/restore_plan as argv does (policies included, entrypoint
"rpc"); other options map to plan fields (EXTRA_FIELDS), and one whose plan field does not
exist is something the engine cannot do yet: refused by name, never ignored.  The image and work
directories are the client's fds, opened through /proc/<peer>/fd (the peer from SO_PEERCRED).
The log goes to the work dir; so do stats-dump and stats-restore (what podman --print-stats
reads: a CRIU image file holding one Stats message).
"""
from __future__ import annotations

import errno
import os
import select
import socket
import struct
import sys
import time
import types

from .engine.errors import CRError, NotifyRefused, PlanError, UnsupportedError


MAX_REQUEST = 1 << 20            # a request is a few hundred bytes; refuse absurd sizes
CLONE_NEWNET = 0x40000000
STATS_MAGICS = (0x55105940, 0x57093306)      # CRIU's IMG_SERVICE and STATS image magics
SCRIPTS_WITH_PID = ("setup-namespaces", "post-restore")

# Options accepted although they change nothing here, with why (logged when given).  The
# session's own (fds, log, notify_scripts, config_file) are used in Session; the rest are
# FLAG_OPTIONS, EXTRA_FIELDS or refused (_refuse_unsupported).
NO_EFFECT = {
    "evasive_devices": "devices are reopened by path; there is no other path to try",
    "link_remap": "files unlinked while open are always saved with their content",
    "force_irmap": "inotify and fanotify watches are found by file handle at dump",
}

# Options that are command-line flags too: they go through plan.dump_plan/restore_plan like
# argv does (with the policies, entrypoint "rpc"; an option set true wins over a policy).
FLAG_OPTIONS = {"leave_running": "leave_running", "shell_job": "shell_job", "file_locks": "file_locks",
                "ext_unix_sk": "ext_unix_sk", "tcp_established": "tcp_established",
                "tcp_skip_in_flight": "skip_in_flight", "freeze_cgroup": "freeze_cgroup",
                "rst_sibling": "restore_sibling"}

# Options that map to a plan field the command line does not set: option -> (DumpPlan field,
# RestorePlan field), None where the option does not apply.  A field the plan class lacks is
# engine work not done yet: the option is refused when set.
EXTRA_FIELDS = {
    "root": ("root", "root"),
    "ext_mnt": ("ext_mounts", "ext_mounts"),
    "auto_ext_mnt": ("ext_mount_auto", None),
    "ext_sharing": ("ext_sharing", None),
    "ext_masters": ("ext_masters", None),
    "cg_root": (None, "cgroup_roots"),
    "join_ns": (None, "join_namespaces"),
    "inherit_fd": (None, "inherit_fds"),
    "lsm_profile": (None, "lsm_profile"),
}


class BadRequest(PlanError):
    """The request cannot be parsed or lacks what its type needs."""


def serve(fd: int) -> int:
    """Serve one session on fd (swrk.py answered nothing); returns the exit status."""
    try:
        channel = Channel(fd)
    except (OSError, PlanError) as e:
        if sys.stderr is not None:
            sys.stderr.write(f"lxc-cr: error: swrk {fd}: {e}\n")
        return 1
    return Session(channel).run()


def canned() -> dict:
    """What every session would work out the same way, worked out once: `make` writes it to
    lxc_cr/rpc_canned.py (`python -m lxc_cr.rpc`).
      ANSWERS: requests whose answer never changes, as protobuf serializes both (swrk.py
        answers them without loading protobuf).
      CLI_DEFAULTS: the command line's defaults, which _args starts from; building the parser
        to get them takes ~5 ms."""
    from .cli import _parser
    pb = _pb()
    return {"ANSWERS": {pb.Request(type=pb.VERSION).SerializeToString(): _version(pb).SerializeToString()},
            "CLI_DEFAULTS": vars(_parser().parse_args([]))}


def _version(pb):
    from . import CRIU_COMPAT_VERSION
    major, minor, sub = (int(x) for x in CRIU_COMPAT_VERSION.split("."))
    # no gitid: go-criu and libcriu read a gitid as "the next minor version"
    return pb.Response(type=pb.VERSION, success=True,
                       version=pb.Version(major_number=major, minor_number=minor, sublevel=sub))


def _pb():
    from . import rpc_pb2
    return rpc_pb2


_logger = None


def _log():
    """The session's logger.  logging is imported on first use (a VERSION session, which
    runc starts before every checkpoint and restore, never needs it); nothing logged before the
    log file is set up reaches stderr: at restore it is the container's (runc hands it over)."""
    global _logger
    if _logger is None:
        import logging
        logging.getLogger("lxc_cr").addHandler(logging.NullHandler())
        logging.getLogger("lxc_cr").propagate = False
        _logger = logging.getLogger("lxc_cr.rpc")
    return _logger


# --- transport -----------------------------------------------------------------------------------

class Channel:
    """One end of the client's SEQPACKET socketpair: one message per packet."""

    def __init__(self, fd: int):
        self.sock = socket.socket(fileno=fd)
        if self.sock.family != socket.AF_UNIX or self.sock.type != socket.SOCK_SEQPACKET:
            self.sock.detach()
            raise PlanError(f"fd {fd} is not an AF_UNIX SOCK_SEQPACKET socket")
        cred = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.peer = struct.unpack("3i", cred)[0]
        self.closed = False

    def receive(self):
        """The next Request, or None at EOF.  Raises BadRequest for bytes that do not parse."""
        probe = bytearray(1)
        size = self.sock.recv_into(probe, 1, socket.MSG_PEEK | socket.MSG_TRUNC)
        if size == 0 and self._hung_up():
            self.closed = True
            return None
        if size > MAX_REQUEST:
            self.sock.recv(1)                      # drop it
            raise BadRequest(f"request of {size} bytes is too large")
        data = self.sock.recv(max(size, 1))
        from google.protobuf.message import DecodeError
        try:
            return _pb().Request.FromString(data)
        except DecodeError as e:
            raise BadRequest(f"cannot parse the request ({len(data)} bytes): {e}") from None

    def _hung_up(self) -> bool:
        p = select.poll()
        p.register(self.sock, select.POLLIN | select.POLLRDHUP)
        return any(ev & (select.POLLHUP | select.POLLRDHUP) for _, ev in p.poll(0))

    def alive(self) -> bool:
        return not self.closed and not self._hung_up()

    def send(self, resp, fd: int | None = None) -> None:
        data = resp.SerializeToString()
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))] if fd is not None else []
        try:
            self.sock.sendmsg([data], ancillary, socket.MSG_NOSIGNAL)
        except OSError as e:
            self.closed = True
            raise NotifyRefused(f"cannot answer the client: {e.strerror}") from None


# --- the session ---------------------------------------------------------------------------------

class Session:
    def __init__(self, channel: Channel):
        self.ch = channel
        self.pb = _pb()

    def run(self) -> int:
        pb = self.pb
        handlers = {pb.DUMP: self.dump, pb.RESTORE: self.restore, pb.CHECK: self.check,
                    pb.PRE_DUMP: self.pre_dump, pb.SINGLE_PRE_DUMP: self.pre_dump,
                    pb.FEATURE_CHECK: self.feature_check, pb.VERSION: self.version}
        while True:
            try:
                req = self.ch.receive()
            except BadRequest as e:
                return self._answer_error(pb.EMPTY, e)
            except OSError as e:
                _log().error("swrk: cannot read a request: %s", e)
                return 1
            if req is None:
                _log().info("swrk: the client closed the session")
                return 1
            handler = handlers.get(req.type)
            if handler is None:
                what = "missing or unknown" if req.type == pb.EMPTY else f"{pb.ReqType.Name(req.type)}, not served"
                return self._answer_error(pb.EMPTY, BadRequest(f"the request type is {what}"))
            if req.type not in (pb.VERSION, pb.FEATURE_CHECK):
                _log()          # quiet before the engine logs anything
            try:
                resp = handler(req)
            except _AlreadyAnswered as done:
                return done.code
            except Exception as e:
                return self._answer_error(req.type, _as_error(e))
            try:
                self.ch.send(resp)
            except NotifyRefused as e:
                _log().error("swrk: %s", e)
                return 1
            if not (req.keep_open and req.type in (pb.VERSION, pb.FEATURE_CHECK)):
                return 0

    def _answer_error(self, req_type: int, e: CRError) -> int:
        _log().error("%s", e)
        resp = self.pb.Response(type=req_type, success=False, cr_errno=_errno_of(e), cr_errmsg=str(e))
        if req_type == self.pb.DUMP:
            resp.dump.restored = False          # libcriu reads resp.dump even on failure
        try:
            self.ch.send(resp)
        except NotifyRefused:
            pass
        return 1

    # --- requests that answer at once

    def version(self, req):
        return _version(self.pb)

    def feature_check(self, req):
        # every field set (runc reads them all), each one true only when it works
        features = self.pb.Features(mem_track=False, lazy_pages=False, pidfd_store=False)
        return self.pb.Response(type=self.pb.FEATURE_CHECK, success=True, features=features)

    def check(self, req):
        from .engine.check import report
        missing = [name for name, present, _ in report() if not present]
        if missing:
            raise UnsupportedError(f"this kernel lacks: {', '.join(missing)}")
        return self.pb.Response(type=self.pb.CHECK, success=True)

    def pre_dump(self, req):
        raise UnsupportedError("pre-dump needs memory change tracking, which lxc-cr does not have yet "
                               "(FEATURE_CHECK answers mem_track=false); do a full dump")

    # --- dump and restore

    def dump(self, req):
        from .cli import _supervised
        from .plan import dump_plan
        opts = self._opts(req)
        if not opts.pid:
            raise BadRequest("DUMP needs opts.pid (dumping the caller itself is not supported)")
        dirs = self._dirs(opts, "dump.log")
        plan = _plan(dump_plan(_args(opts, dirs, "dump", tree=opts.pid), "rpc"), 0, opts, self._notifier(opts),
                     orphan_pts_master=opts.orphan_pts_master)
        resp = self.pb.Response(type=self.pb.DUMP, success=True)
        resp.dump.restored = False

        # the dump runs in a supervised worker (as on the command line): if this process is
        # killed, the worker rolls back and the tree runs on; the worker gives the answer
        def work():
            from .engine import dump
            try:
                stats = dump(plan)
                _write_stats(dirs.work, "stats-dump", self.pb.Stats(dump=_dump_stats(self.pb, stats)))
            except Exception as e:
                self._answer_error(self.pb.DUMP, _as_error(e))
                raise
            self.ch.send(resp)
        code = _supervised(work)
        raise _AlreadyAnswered(code)

    def restore(self, req):
        from .engine import restore
        from .plan import restore_plan
        opts = self._opts(req)
        dirs = self._dirs(opts, "restore.log")
        hand_master = self._hand_master if opts.orphan_pts_master and opts.notify_scripts else None
        plan = _plan(restore_plan(_args(opts, dirs, "restore", restore_detached=True), "rpc"), 1, opts,
                     self._notifier(opts), orphan_pts_master=hand_master)
        started = time.monotonic()
        pid = restore(plan)
        _write_stats(dirs.work, "stats-restore", self.pb.Stats(restore=self.pb.RestoreStats(
            pages_compared=0, pages_skipped_cow=0, forking_time=0,
            restore_time=_usec(time.monotonic() - started), pages_restored=_pages_in(dirs.images))))
        resp = self.pb.Response(type=self.pb.RESTORE, success=True)
        resp.restore.pid = pid
        return resp

    def _opts(self, req):
        if not req.HasField("opts"):
            raise BadRequest("the request carries no opts")
        opts = req.opts
        if not opts.HasField("images_dir_fd"):
            raise BadRequest("opts.images_dir_fd is missing")
        _refuse_unsupported(opts)
        return opts

    def _dirs(self, opts, default_log: str) -> "_Dirs":
        from .cli import _setup_log
        images = _client_dir(self.ch.peer, opts.images_dir_fd, "images_dir_fd")
        work = _client_dir(self.ch.peer, opts.work_dir_fd, "work_dir_fd") if opts.HasField("work_dir_fd") else images
        name = opts.log_file or default_log
        if "/" in name:
            raise BadRequest(f"log_file {name!r} must be a name in the work directory, not a path")
        os.chdir(work)
        log_path = os.path.join(work, name)
        _setup_log(log_path, _verbosity(opts))
        _log_no_effect(opts)
        return _Dirs(images, work, log_path)

    def _notifier(self, opts):
        """The plan's notify: the exchange with the client, or (without notify_scripts) a check
        at the last veto points that the client is still there to take the answer."""
        if not opts.notify_scripts:
            def still_there(script: str, pid: int | None) -> None:
                if script in ("post-dump", "post-restore") and not self.ch.alive():
                    raise NotifyRefused(f"the client went away before {script}")
            return still_there

        return self._exchange

    def _hand_master(self, fd: int, index: int) -> None:
        """orphan-pts-master: a new pty master (of a pair whose master the client held at dump)
        goes to the client with the notification, as SCM_RIGHTS."""
        _log().info("pty %d: its new master goes to the client (orphan-pts-master)", index)
        self._exchange("orphan-pts-master", None, fd)

    def _exchange(self, script: str, pid: int | None, fd: int | None = None) -> None:
        """One notification: sent (with fd, if any), then the client's answer; a false answer,
        a closed socket or anything but a NOTIFY request vetoes."""
        pb = self.pb
        resp = pb.Response(type=pb.NOTIFY, success=True, notify=pb.Notify(script=script))
        if script in SCRIPTS_WITH_PID:
            resp.notify.pid = pid
        self.ch.send(resp, fd)
        try:
            answer = self.ch.receive()
        except (OSError, BadRequest) as e:
            raise NotifyRefused(f"bad answer to notify {script}: {e}") from None
        if answer is None:
            raise NotifyRefused(f"the client closed the connection at notify {script}")
        if answer.type != pb.NOTIFY:
            raise NotifyRefused(f"the client answered notify {script} with request type {answer.type}")
        if not answer.notify_success:
            raise NotifyRefused(f"the client refused notify {script}")


def _as_error(e: Exception) -> CRError:
    """What the client is told: a CRError as it is; anything else is a bug, logged in full."""
    if isinstance(e, CRError):
        return e
    _log().exception("swrk: internal error")
    return CRError(f"internal error: {type(e).__name__}: {e}")


class _AlreadyAnswered(Exception):
    """The dump worker sent the final answer itself; carries the exit status."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class _Dirs:
    """A session's image and work directories (as paths here) and its log file."""

    def __init__(self, images: str, work: str, log: str):
        self.images, self.work, self.log = images, work, log


def _client_dir(peer: int, fd: int, what: str) -> str:
    """The client's directory fd as a path here (the engine works with paths): checked to be the
    same directory, so that a path the client could not see is an error, not another directory."""
    try:
        ours = os.open(f"/proc/{peer}/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise BadRequest(f"{what} {fd}: cannot open fd {fd} of client {peer}: {e.strerror}") from None
    try:
        path = os.readlink(f"/proc/self/fd/{ours}")
        st, there = os.fstat(ours), None
        try:
            there = os.stat(path)
        except OSError:
            pass
        if there is None or (there.st_dev, there.st_ino) != (st.st_dev, st.st_ino):
            raise BadRequest(f"{what} {fd}: directory {path} of client {peer} is not reachable here")
        return path
    finally:
        os.close(ours)


def _refuse_unsupported(opts) -> None:
    """Options nothing here implements, refused by name when set (Go and libcriu send many
    fields present but false: only a set value counts)."""
    unsupported = {
        "ps": "a page server", "parent_img": "incremental dumps (parent_img)",
        "track_mem": "memory change tracking", "auto_dedup": "auto-dedup", "lazy_pages": "lazy pages",
        "veths": "veth pairs", "exec_cmd": "exec_cmd", "skip_mnt": "skip_mnt",
        "enable_fs": "enable_fs", "unix_sk_ino": "unix_sk_ino", "irmap_scan_paths": "irmap_scan_paths",
        "cgroup_props": "cgroup properties", "cgroup_props_file": "cgroup properties",
        "cgroup_dump_controller": "cgroup_dump_controller", "weak_sysctls": "weak_sysctls",
        "status_fd": "status_fd", "tcp_close": "tcp_close", "tls": "TLS", "tls_cacert": "TLS", "tls_cacrl": "TLS",
        "tls_cert": "TLS", "tls_key": "TLS", "tls_no_cn_verify": "TLS", "cgroup_yard": "cgroup_yard",
        "pre_dump_mode": "pre-dump modes", "pidfd_store_sk": "pidfd_store_sk",
        "lsm_mount_context": "lsm_mount_context", "network_lock": "network lock methods",
        "mntns_compat_mode": "mntns_compat_mode", "cpu_cap": "cpu_cap", "timeout": "timeout",
        "ghost_limit": "ghost_limit (fixed limits apply)",
    }
    for name, what in unsupported.items():
        if _is_set(opts, name):
            raise UnsupportedError(f"opts.{name}: {what} is not supported by lxc-cr")
    if opts.config_file and _non_empty_file(opts.config_file):
        raise UnsupportedError(f"config_file {opts.config_file}: CRIU configuration files are not read "
                               f"by lxc-cr (only a missing or empty one is accepted)")
    if opts.empty_ns & ~CLONE_NEWNET:
        raise UnsupportedError(f"empty_ns {opts.empty_ns:#x}: only the network namespace (0x40000000) can "
                               f"be asked for empty")


def _cgroup_mode(opts) -> str | None:
    """manage_cgroups_mode as plan.manage_cgroups (engine/cgroups.py MODES, CRIU's meanings);
    None: the default (soft, or what a policy says).  manage_cgroups set false is CRIU's ignore."""
    pb = _pb()
    if opts.HasField("manage_cgroups_mode") and opts.manage_cgroups_mode != pb.CG_DEFAULT:
        return pb.CgroupMode.Name(opts.manage_cgroups_mode)[3:].lower()
    if opts.HasField("manage_cgroups") and not opts.manage_cgroups:
        return "ignore"
    return None


def _is_set(opts, name: str) -> bool:
    field = opts.DESCRIPTOR.fields_by_name[name]
    if field.label == field.LABEL_REPEATED:
        return len(getattr(opts, name)) > 0
    if field.type == field.TYPE_MESSAGE:
        return opts.HasField(name)
    return bool(getattr(opts, name))


def _non_empty_file(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False                    # runc always names one; a missing file is ignored


def _args(opts, dirs: "_Dirs", command: str, **more) -> types.SimpleNamespace:
    """The command line that means the same as opts (what plan.py reads): the CLI parser's
    defaults, then the directories, the log and every flag set in opts."""
    try:
        from .rpc_canned import CLI_DEFAULTS as defaults
    except ImportError:         # not built
        from .cli import _parser
        defaults = vars(_parser().parse_args([]))
    args = types.SimpleNamespace(**{k: list(v) if isinstance(v, list) else v for k, v in defaults.items()})
    args.command = command
    args.images_dir, args.log_file, args.verbosity = dirs.images, dirs.log, _verbosity(opts)
    args.manage_cgroups = _cgroup_mode(opts)
    for option, name in FLAG_OPTIONS.items():
        if getattr(opts, option):
            setattr(args, name, getattr(opts, option))
    args.external = list(opts.external)     # CRIU's --external spellings: net[INO]:extRootNetNS...
    for name, value in more.items():
        setattr(args, name, value)
    return args


def _plan(plan, side: int, opts, notify, **fields):
    """plan plus notify, fields and every EXTRA_FIELDS option set in opts; an option whose field
    the plan lacks (engine work not done yet) is refused by name."""
    from . import actions
    known = set(plan._fields)
    extra = {"notify": actions.chain(notify, plan.notify), **fields}   # the client first, then the plan's commands
    for option, names in EXTRA_FIELDS.items():
        value = _option_value(opts, option) if _is_set(opts, option) else None
        if value is None:
            continue
        name = names[side]
        if name is None:
            _log().info("opts.%s: does not apply to %s; ignored", option, "dump" if side == 0 else "restore")
            continue
        if name not in known:
            raise UnsupportedError(f"opts.{option} = {_show(value)}: the engine cannot do this yet "
                                   f"(no {type(plan).__name__}.{name})")
        extra[name] = value
    if opts.empty_ns:
        _log().warning("empty_ns network: the network namespace is dumped and restored as it is, not left "
                    "empty (the same for a namespace with only its loopback, as runc makes them)")
    return plan._replace(**extra)


def _option_value(opts, option: str):
    """The plan's form of an option: repeated messages become dicts or tuples."""
    if option == "root" and opts.root.rstrip("/") == "":
        return None
    value = getattr(opts, option)
    if option == "ext_mnt":
        return {m.key: m.val for m in value}
    if option == "cg_root":
        return {c.ctrl: c.path for c in value}
    if option == "inherit_fd":
        return {i.key: _own_fd(i.fd, i.key) for i in value}
    if option == "join_ns":
        from .engine.joinns import from_rpc
        return from_rpc(value)
    return value


def _own_fd(fd: int, key: str) -> int:
    try:
        os.fstat(fd)
    except OSError:
        raise BadRequest(f"inherit_fd {key}: fd {fd} is not open in the swrk process") from None
    return fd


def _show(value) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def _verbosity(opts) -> int:
    return min(max(opts.log_level, 0), 4)


def _log_no_effect(opts) -> None:
    for name, why in NO_EFFECT.items():
        if _is_set(opts, name):
            _log().info("opts.%s: accepted, no effect: %s", name, why)


def _errno_of(e: Exception) -> int:
    if isinstance(e, NotifyRefused):
        return errno.ECANCELED
    if isinstance(e, UnsupportedError):
        return errno.EOPNOTSUPP
    if isinstance(e, PlanError):
        return errno.EINVAL
    return errno.EIO


# --- statistics ------------------------------------------------------------------------------

def _usec(seconds: float) -> int:
    return min(int(seconds * 1e6), (1 << 32) - 1)


def _dump_stats(pb, stats):
    return pb.DumpStats(freezing_time=_usec(stats.freezing_time), frozen_time=_usec(stats.frozen_time),
                        memdump_time=_usec(stats.memdump_time), memwrite_time=0,
                        pages_scanned=stats.pages_written, pages_skipped_parent=0,
                        pages_written=stats.pages_written, pages_lazy=0)


def _pages_in(images: str) -> int:
    from .engine import kernel
    return sum(os.path.getsize(os.path.join(images, n)) for n in os.listdir(images)
               if n.startswith("pages-") and n.endswith(".img")) // kernel.PAGE_SIZE


def _write_stats(work: str, name: str, stats) -> None:
    """A CRIU image file: the two magics, then one entry (u32 size + message)."""
    payload = stats.SerializeToString()
    data = struct.pack("<III", *STATS_MAGICS, len(payload)) + payload
    path = os.path.join(work, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def missing_support() -> list[str]:
    """The options of EXTRA_FIELDS the plans cannot carry yet (the engine's gaps, as the server
    will refuse them): one "opts.X (Plan.field)" per gap."""
    from .plan import DumpPlan, RestorePlan
    out = []
    for option, names in EXTRA_FIELDS.items():
        for cls, name in zip((DumpPlan, RestorePlan), names):
            if name is not None and name not in cls._fields:
                out.append(f"opts.{option} ({cls.__name__}.{name})")
    return out


if __name__ == "__main__":
    # `make`: lxc_cr/rpc_canned.py
    print('"""Made by `make` (lxc_cr/rpc.py canned): do not edit."""')
    for name, value in canned().items():
        print(f"{name} = {value!r}")
