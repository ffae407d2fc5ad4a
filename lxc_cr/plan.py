"""Plans: the one thing the engine sees.

Every entrypoint (command line, the RPC server in rpc.py, later container configs) turns its
input into a DumpPlan or a RestorePlan; the engine never reads argv.
The settings a policy can choose (lxc_cr/policy.py) are resolved here, once:
what the caller gave explicitly wins over the container's policy rules, which
win over the site defaults.  `origins` says where each setting came from.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from . import actions, criu_opts, policy
from .engine.errors import PlanError


class DumpPlan(NamedTuple):
    """Everything a dump does; immutable (plan._replace(...) makes a changed copy), and its dict
    defaults are shared, so they are never modified."""
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
    ghost_limit: int = 64 << 20     # largest unlinked open file whose content is saved
    compress: str = "none"          # "zstd": page files are compressed once the tree is released
    retention: tuple | None = None  # (glob of this container's image dirs, how many to keep)
    actions: tuple = ()             # actions.Command: policy actions, --action-script
    origins: dict = {}   # setting -> policy.Setting, for `lxc-cr plan`
    external_files: tuple = ()      # keys of files outside the tree, not dumped (--external tty[R:D])
    external_namespaces: tuple = ()  # (kind, inode, key): the tree's net/pid namespace is the caller's (engine/extns.py)
    cgroup_roots: dict = {}  # controllers (None: all) -> the tree's root cgroup
    manage_cgroups: str = "soft"    # engine/cgroups.py MODES
    ext_mounts: tuple = ()          # (mountpoint, key) pairs, or a dict: external mounts (--ext-mount-map MNT:KEY)
    ext_mount_auto: bool = False    # binds of file systems mounted outside are external (auto)
    ext_sharing: bool = False       # mounts may share a peer group with mounts outside
    ext_masters: bool = False       # mounts may be slaves of mounts outside
    root: str | None = None         # --root: accepted (runtimes pass it); the tree's mounts are read from it
    orphan_pts_master: bool = False  # a pty of the tree's devpts whose master is the caller's is dumped (RPC)
    log_file: str | None = None
    verbosity: int = 2
    notify: Callable | None = None   # notify(script, pid) at CRIU's action-script points (engine/notify.py)


class NetDevice(NamedTuple):
    """A device of the tree's network namespace that restore takes from, or makes on, the host:
    kind veth (host end `host`, on bridge `bridge`), macvlan (on host device `host`) or
    netdev (host device `host` moved in).  `name` is the device's name inside."""
    kind: str
    name: str
    host: str
    bridge: str | None = None


class RestorePlan(NamedTuple):
    """Everything a restore does; immutable, as DumpPlan."""
    images_dir: str
    detach: bool = False
    pidfile: str | None = None
    shell_job: bool = False
    restore_sibling: bool = False
    file_locks: bool = False
    ext_unix_sk: bool = False
    tcp_established: bool = False
    actions: tuple = ()
    inherit_fds: dict = {}  # file key -> our fd that replaces it (engine/inherit.py)
    origins: dict = {}
    net_devices: tuple = ()         # NetDevice entries, from --external and --veth-pair
    cgroup_roots: dict = {}  # controllers (None: all, "": cgroup2) -> new root
    manage_cgroups: str = "soft"    # engine/cgroups.py MODES
    root: str | None = None         # the root mount of a tree with its own mount namespace (--root)
    ext_mounts: tuple = ()          # (key, host path) pairs, or a dict: external mounts (--ext-mount-map KEY:PATH)
    join_namespaces: tuple = ()     # joinns.JoinNs: namespaces joined, not made (--join-ns; engine/joinns.py)
    orphan_pts_master: Callable | None = None  # hand(fd, index): a new master goes to the caller (RPC)
    log_file: str | None = None
    verbosity: int = 2
    notify: Callable | None = None


# command-line flags that are also policy settings: given means true
POLICY_FLAGS = ("leave_running", "tcp_established", "ext_unix_sk", "file_locks", "skip_in_flight")


def settings(args, entrypoint: str = "cli", name: str | None = None, labels: dict | None = None,
             origin: str = "command line") -> dict:
    """The effective settings (policy.Setting each) for this caller, container and entrypoint."""
    explicit = {key: True for key in POLICY_FLAGS if getattr(args, key, False)}
    if getattr(args, "ghost_limit", None) is not None:
        explicit["ghost_limit"] = args.ghost_limit
    if getattr(args, "manage_cgroups", None) is not None:
        explicit["manage_cgroups"] = args.manage_cgroups
    files = policy.load(args.policy if getattr(args, "policy", None) else policy.default_files())
    return policy.resolve(files, entrypoint, explicit, origin, name, labels)


def dump_plan(args, entrypoint: str = "cli", name: str | None = None, labels: dict | None = None) -> DumpPlan:
    if args.tree is None:
        raise PlanError("dump needs -t PID")
    if args.tree <= 0 or not os.path.exists(f"/proc/{args.tree}"):
        raise PlanError(f"no process with PID {args.tree}")
    s = settings(args, entrypoint, name, labels)
    value = {key: setting.value for key, setting in s.items()}
    name = name or f"pid{args.tree}"
    images_dir = _images_dir(args, value["images_dir"], name, entrypoint)
    retention = None
    if value["keep"] and value["images_dir"] and not args.images_dir:
        retention = (value["images_dir"].format(name=name, entrypoint=entrypoint, time="*"), value["keep"])
    return DumpPlan(pid=args.tree, images_dir=images_dir, leave_running=value["leave_running"],
                    shell_job=args.shell_job, file_locks=value["file_locks"], ext_unix_sk=value["ext_unix_sk"],
                    tcp_established=value["tcp_established"],
                    # skipping is only safe where the peer already copes with loss: half-open connections
                    skip_in_flight=value["skip_in_flight"] or value["on_unsupported"] == "skip",
                    check_only=args.check_only, freeze_cgroup=args.freeze_cgroup,
                    ghost_limit=value["ghost_limit"], compress=value["compress"], retention=retention,
                    actions=(commands := _commands(args, value, ("pre_dump", "post_dump"))),
                    notify=actions.notifier(list(commands), args.tree, images_dir), origins=s,
                    external_files=criu_opts.external_files(args), cgroup_roots=_cgroup_roots(args),
                    external_namespaces=criu_opts.external_namespaces(args),
                    manage_cgroups=value["manage_cgroups"],
                    ext_mounts=(mounts := _mount_map(args))[0], ext_mount_auto=mounts[1],
                    ext_sharing=args.enable_external_sharing, ext_masters=args.enable_external_masters,
                    root=_root(args),
                    log_file=_log_path(args, images_dir, _default_log(args)), verbosity=args.verbosity)


def restore_plan(args, entrypoint: str = "cli", name: str | None = None, labels: dict | None = None) -> RestorePlan:
    s = settings(args, entrypoint, name, labels)
    value = {key: setting.value for key, setting in s.items()}
    images_dir = _images_dir(args, None, name, entrypoint)
    return RestorePlan(images_dir=images_dir, detach=args.restore_detached,
                       pidfile=_pidfile(args), shell_job=args.shell_job,
                       restore_sibling=args.restore_sibling, file_locks=value["file_locks"],
                       ext_unix_sk=value["ext_unix_sk"], tcp_established=value["tcp_established"],
                       net_devices=_net_devices(args), cgroup_roots=_cgroup_roots(args),
                       join_namespaces=_join_namespaces(args),
                       manage_cgroups=value["manage_cgroups"], root=_root(args), ext_mounts=_mount_map(args)[0],
                       actions=(commands := _commands(args, value, ("post_restore",))),
                       notify=actions.notifier(list(commands), None, images_dir), origins=s, inherit_fds=criu_opts.inherit_fds(args),
                       log_file=_log_path(args, images_dir, "restore.log"), verbosity=args.verbosity)


def _join_namespaces(args) -> tuple:
    from .engine.joinns import from_cli
    return from_cli(args.join_ns)


def _cgroup_roots(args) -> dict:
    from .engine.cgroups import parse_roots
    try:
        return parse_roots(getattr(args, "cgroup_root", None) or [])
    except ValueError as e:
        raise PlanError(str(e)) from None


EXTERNAL_MNT = r"^mnt\[([^\]]*)\](?::(.*))?$"


def _mount_map(args) -> tuple[tuple, bool]:
    """--ext-mount-map A:B and --external mnt[A]:B as (A, B) pairs (dump: mountpoint, key;
    restore: key, host path), and whether auto-detection was asked for (auto, mnt[])."""
    pairs, auto = [], False
    specs = [(s, s) for s in args.ext_mount_map]
    specs += [(f"{m.group(1)}:{m.group(2) or ''}", text) for text in args.external
              if (m := re.match(EXTERNAL_MNT, text))]
    for spec, given in specs:
        if spec == "auto" or given.startswith("mnt[]"):
            auto = True
            continue
        a, sep, b = spec.partition(":")
        if not sep or not a:
            raise PlanError(f"--ext-mount-map {given}: expected A:B (dump MNT:KEY, restore KEY:PATH) or auto")
        pairs.append((a, b))
    return tuple(pairs), auto


def _root(args) -> str | None:
    if not args.root:
        return None
    if not os.path.isdir(args.root):
        raise PlanError(f"--root {args.root}: not a directory")
    return os.path.abspath(args.root)


EXTERNAL_NET = r"^(veth|macvlan|netdev)\[([^\]/]+)\]:([^@/]+)(?:@([^@/]+))?$"
VETH_PAIR = r"^([^=/]+)=([^@/]+)(?:@([^@/]+))?$"


def _net_devices(args) -> tuple:
    """--external veth[IF]:HOST[@BRIDGE], macvlan[IF]:LINK, netdev[IF]:ORIG (CRIU's and LXC's
    spelling) and CRIU's older --veth-pair IF=HOST[@BRIDGE]."""
    out = []
    for text in args.external:
        if re.match(EXTERNAL_MNT, text):
            continue                # a mount (_mount_map)
        m = re.match(EXTERNAL_NET, text)
        if not m or (m.group(4) and m.group(1) != "veth"):
            raise PlanError(f"--external {text}: expected veth[IF]:HOST[@BRIDGE], macvlan[IF]:LINK "
                            f"or netdev[IF]:HOSTDEV")
        out.append(NetDevice(*m.groups()))
    for text in args.veth_pair:
        m = re.match(VETH_PAIR, text)
        if not m:
            raise PlanError(f"--veth-pair {text}: expected IF=HOST[@BRIDGE]")
        out.append(NetDevice("veth", *m.groups()))
    names = [d.name for d in out]
    for name in names:
        if names.count(name) > 1:
            raise PlanError(f"network device {name} is named by more than one --external/--veth-pair")
    return tuple(out)


def to_yaml(value) -> str:
    """A plan (or a report holding plans) as `lxc-cr plan` prints it and the dump log records it."""
    import yaml
    return yaml.safe_dump(_plain(value), sort_keys=False, default_flow_style=False)


def _plain(value):
    """Records (NamedTuples: plans and what they hold), tuples and dicts as the plain lists and
    dicts YAML writes."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):       # hooks (notify) are code, not settings: left out
        return {k: _plain(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _default_log(args) -> str:
    return "pre-dump.log" if args.command == "pre-dump" else "dump.log"


def _commands(args, value: dict, names: tuple) -> tuple:
    return tuple(actions.from_settings(value, names) + actions.from_action_script(getattr(args, "action_script", None)))


def _images_dir(args, template: str | None, name: str | None, entrypoint: str) -> str:
    """-D wins; else a policy's template (dump only); else the current directory, as in CRIU."""
    if args.images_dir:
        return os.path.abspath(args.images_dir)
    if template:
        return template.format(name=name, entrypoint=entrypoint, time=_timestamp())
    return os.path.abspath(".")


def _timestamp() -> str:
    """Sortable, and fine enough that two dumps in a row get two directories."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.localtime(now)) + f".{int(now * 1e6) % 1000000:06d}"


def _log_path(args, images_dir: str, default: str) -> str | None:
    """-o names a file inside the image directory unless it is absolute (as in CRIU); '-' is stderr."""
    name = args.log_file or default
    if name == "-":
        return None
    return name if os.path.isabs(name) else os.path.join(images_dir, name)


def _pidfile(args) -> str | None:
    if not args.pidfile:
        return None
    return args.pidfile if os.path.isabs(args.pidfile) else os.path.abspath(args.pidfile)
