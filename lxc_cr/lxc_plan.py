"""An LXC container as a dump plan: `lxc-cr plan --lxc NAME`.

The container is read through python3-lxc (config items, init PID, network
devices, mount entries) and /proc (its cgroups, its console).  From those, this
module writes the `criu dump` command line LXC itself passes for
`lxc-checkpoint -n NAME -D DIR [-s]` (runtimes.md §2.3), and hands it to the
same parser and plan builder (plan.dump_plan) that run when LXC calls hooks/criu:
the plan printed is the plan a checkpoint runs (the dump log records it too).
Policy rules for the entrypoint "lxc" and the container's name apply in both.
Nothing is frozen: blockers come from the dump's own pre-flight (dump
--check-only), listed first (by cli.cmd_plan), then what LXC's restore would
trip over.
"""
from __future__ import annotations

import os
import re

from .engine.errors import PlanError


def container(name: str):
    try:
        import lxc
    except ImportError:
        raise PlanError("python3-lxc is not installed (make setup installs it)") from None
    c = lxc.Container(name)
    if not c.defined:
        raise PlanError(f"no LXC container named {name!r}")
    if not c.running:
        raise PlanError(f"container {name} is not running ({c.state})")
    return c


def dump_argv(c, images_dir: str, stop: bool) -> list[str]:
    """The argv (after `criu`) that LXC 5.0.2 passes to dump this container."""
    pid = c.init_pid
    argv = ["dump", "--tcp-established", "--file-locks", "--link-remap", "--manage-cgroups=full",
            "--ext-mount-map", "auto", "--enable-external-sharing", "--enable-external-masters",
            "--enable-fs", "hugetlbfs", "--enable-fs", "tracefs", "-D", images_dir,
            "-o", os.path.join(images_dir, "dump.log")]
    for controllers, path in cgroups(pid).items():
        if controllers != "cgroup2":
            argv += ["--cgroup-root", f"{controllers}:{path}"]
        elif _unified_controllers():     # LXC names the unified hierarchy by its controllers
            argv += ["--cgroup-root", f"{','.join(_unified_controllers())}:{path}"]
    for entry in mount_entries(c):
        if entry["bind"]:
            argv += ["--ext-mount-map", f"/{entry['target']}:{entry['target']}"]
    argv += ["-t", str(pid), "--skip-in-flight", "--freeze-cgroup", freeze_cgroup(pid)]
    console = console_key(c)
    if console:
        argv += ["--ext-mount-map", "/dev/console:console", "--external", console]
    argv += ["--force-irmap"]
    if not stop:
        argv.append("--leave-running")
    return argv


def cgroups(pid: int) -> dict[str, str]:
    """controllers -> the init's cgroup, from /proc/PID/cgroup ('' is cgroup2)."""
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            out[controllers or "cgroup2"] = path
    return out


def _unified() -> str:
    return "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"


def _unified_controllers() -> list[str]:
    try:
        with open(os.path.join(_unified(), "cgroup.controllers")) as f:
            return f.read().split()
    except OSError:
        return []


def freeze_cgroup(pid: int) -> str:
    groups = cgroups(pid)
    for controllers, path in groups.items():
        if "freezer" in controllers.split(","):
            return f"/sys/fs/cgroup/freezer/{path}"      # as LXC prints it (double slash)
    return _unified() + groups.get("cgroup2", "/")


def console_key(c) -> str | None:
    """tty[RDEV:DEV] of the container's /dev/console, as LXC writes DIR/tty.info; None without one."""
    if c.get_config_item("lxc.console.path") == "none":
        return None
    try:
        st = os.stat(f"/proc/{c.init_pid}/root/dev/console")
    except OSError:
        return None
    return f"tty[{st.st_rdev:x}:{st.st_dev:x}]"


def mount_entries(c) -> list[dict]:
    out = []
    for line in c.get_config_item("lxc.mount.entry") or []:
        fields = line.split()
        if len(fields) >= 4:
            out.append({"source": fields[0], "target": fields[1].strip("/"), "type": fields[2],
                        "options": fields[3], "bind": "bind" in fields[3].split(",")})
    return out


def networks(c) -> list[dict]:
    out = []
    for i in range(len(c.network)):
        item = lambda key: c.get_config_item(f"lxc.net.{i}.{key}")     # noqa: E731
        out.append({"index": i, "type": item("type"), "name": item("name") or f"eth{i}", "link": item("link"),
                    "hwaddr": item("hwaddr"), "ipv4": item("ipv4.address") or [],
                    "ipv4_gateway": item("ipv4.gateway"),
                    "host_side": c.get_running_config_item(f"lxc.net.{i}.veth.pair")})
    return out


def restore_blockers(c) -> list[str]:
    """Container settings that make LXC's own restore fail (runtimes.md §2.6)."""
    out = []
    if int(c.get_config_item("lxc.tty.max") or 0) > 0:
        out.append("lxc.tty.max > 0: LXC's restore monitor crashes on the first lxc command; set it to 0")
    if console_key(c) and int(c.get_config_item("lxc.pty.max") or 0) > 1:
        out.append("lxc.pty.max > 1: LXC allocates no console at restore; set it to 1 or lxc.console.path = none")
    profile = c.get_config_item("lxc.apparmor.profile")
    if profile and profile not in ("unconfined", ""):
        out.append(f"lxc.apparmor.profile = {profile}: only apparmor:unconfined can be restored")
    return out


def describe(c) -> dict:
    return {"name": c.name, "state": c.state, "init_pid": c.init_pid,
            "rootfs": c.get_config_item("lxc.rootfs.path"), "hostname": c.get_config_item("lxc.uts.name"),
            "cgroups": cgroups(c.init_pid), "network": networks(c), "mount_entries": mount_entries(c),
            "mount_auto": c.get_config_item("lxc.mount.auto") or []}


def report(args) -> tuple[dict, object]:
    """For `lxc-cr plan --lxc NAME`: what LXC's checkpoint of it would run (the DumpPlan,
    built as when LXC calls hooks/criu) and what the plan printer adds about the container."""
    import shlex
    from .cli import _parser
    from .plan import dump_plan
    c = container(args.lxc)
    argv = dump_argv(c, os.path.abspath(args.images_dir or "."), stop=not args.leave_running)
    policies = [f"--policy={path}" for path in args.policy or ()]   # LXC's calls read the site's
    plan = dump_plan(_parser().parse_args(argv + policies), "lxc", c.name)
    return {"restore_blocking": restore_blockers(c), "container": describe(c),
            "criu_command": shlex.join(["criu", *argv])}, plan


def blockers(name: str) -> list[str]:
    """Everything that stops a checkpoint and restore of container `name` (empty: none)."""
    from .cli import _parser
    from .engine.dumping import check_only
    document, plan = report(_parser().parse_args(["plan", "--lxc", name]))
    return check_only(plan) + document["restore_blocking"]


PAYLOAD = r"/lxc\.payload\.([^/]+)$"


def caller(args) -> tuple[str, str | None]:
    """(entrypoint, container name) for policy rules.  hooks/criu called by LXC is told the
    container's payload cgroup (--freeze-cgroup on dump, --cgroup-root on restore)."""
    if os.environ.get("LXC_CR_PERSONA") != "criu":
        return "cli", None
    roots = getattr(args, "cgroup_root", None) or getattr(args, "stand_in_cgroup_root", None) or []
    for path in [args.freeze_cgroup or ""] + [root.split(":", 1)[-1] for root in roots]:
        m = re.search(PAYLOAD, path)
        if m:
            return "lxc", m.group(1)
    return "cli", None
