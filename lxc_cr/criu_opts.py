"""CRIU's options as runtimes pass them (LXC's exact argv; what each does: docs/SUPPORTED.md).

cli.py defines lxc-cr's own options; this module adds the rest of what LXC's
`criu dump|pre-dump|restore` command lines hold, each with what we do with it:

- honoured: --external KEY (files outside the tree: DumpPlan.external_files),
  --external net[INO]:KEY and pid[INO]:KEY (the tree's namespaces that are the caller's:
  DumpPlan.external_namespaces, engine/extns.py),
  --inherit-fd fd[N]:KEY (RestorePlan.inherit_fds), --join-ns NS:PID|PATH (namespaces
  joined at restore: RestorePlan.join_namespaces, engine/joinns.py), --action-script (the plan's
  commands run at every notification point, lxc_cr/actions.py),
  --lsm-profile apparmor:unconfined (nothing to apply); --root, --ext-mount-map and
  --external mnt[...] are cli.py's (plan.py parses them);
- accepted with a logged reason, where the option cannot change anything here
  (ACCEPTED below);
- refused with one line, where ignoring it would lose data or mislead
  (--page-server, an LSM profile other than unconfined).
"""
from __future__ import annotations

import os
import re

# option -> why it changes nothing here (logged when given)
ACCEPTED = {
    "link_remap": "files unlinked while open are always saved with their content; no link is needed",
    "force_irmap": "inotify and fanotify watches are found by file handle at dump; no inode map is needed",
    "enable_fs": "filesystems are never mounted automatically; a mount in the tree is dumped or refused "
                 "like any other",
    "track_mem": "memory changes are not tracked; the dump copies all memory",
    "prev_images_dir": "no memory was copied ahead; this dump is complete by itself",
}

INHERIT_FD = r"fd\[([0-9]+)\]:(.+)"
FILE_KEYS = ("tty[", "pipe:[", "socket:[", "/")       # --external keys that name files
MOUNT_KEY = "mnt["                                     # --external mnt[...]: a mount (plan._mount_map)
NS_KEYS = ("net[", "pid[")                             # --external net[INO]:KEY: a namespace (engine/extns.py)
EXTERNAL_NS = r"(net|pid)\[([0-9]+)\]:(\S{1,256})"


def add_options(p) -> None:
    """Add CRIU's runtime options to lxc-cr's argparse parser."""
    p.add_argument("--inherit-fd", action="append", default=[])
    p.add_argument("--join-ns", action="append", default=[])
    p.add_argument("--action-script")
    p.add_argument("--lsm-profile")
    p.add_argument("--page-server", action="store_true")
    p.add_argument("--address")
    p.add_argument("--port")
    p.add_argument("--feature")
    for name in ("link_remap", "force_irmap", "enable_external_sharing", "enable_external_masters",
                 "track_mem"):
        p.add_argument("--" + name.replace("_", "-"), action="store_true")
    p.add_argument("--enable-fs", action="append", default=[])
    p.add_argument("--prev-images-dir")


def notes(args) -> list[str]:
    """One log line per option that was given but changes nothing here."""
    out = [f"--{name.replace('_', '-')}: accepted, no effect: {why}"
           for name, why in ACCEPTED.items() if getattr(args, name, None)]
    if args.lsm_profile:
        out.append(f"--lsm-profile {args.lsm_profile}: nothing to apply (unconfined)")
    return out


def refuse(args, command: str) -> None:
    """Options that cannot be honoured and must not be ignored."""
    from .engine.errors import PlanError
    if args.page_server or args.address or args.port:
        raise PlanError("--page-server is not supported: images are written to the image directory only")
    if args.lsm_profile and args.lsm_profile not in ("apparmor:unconfined", "none"):
        raise PlanError(f"--lsm-profile {args.lsm_profile}: LSM profiles are not applied; only "
                        f"apparmor:unconfined is accepted")
    if args.feature and command != "check":
        raise PlanError(f"--feature belongs to check, not {command}")


def external_files(args) -> tuple[str, ...]:
    """Dump: the --external keys that name files; the others must be mounts (plan._mount_map) or
    namespaces (external_namespaces); network devices are named at restore."""
    from .engine.errors import PlanError
    for key in args.external:
        if not key.startswith(FILE_KEYS + (MOUNT_KEY,) + NS_KEYS):
            raise PlanError(f"--external {key}: on dump, only files, mounts and the net and pid namespaces "
                            f"can be external (tty[RDEV:DEV], pipe:[INO], socket:[INO], a path, mnt[...], "
                            f"net[INO]:KEY, pid[INO]:KEY)")
    return tuple(key for key in args.external if not key.startswith((MOUNT_KEY,) + NS_KEYS))


def external_namespaces(args) -> tuple[tuple[str, int, str], ...]:
    """Dump: --external net[INO]:KEY and pid[INO]:KEY as (kind, inode, key)."""
    from .engine.errors import PlanError
    out = []
    for text in args.external:
        if text.startswith(NS_KEYS):
            m = re.fullmatch(EXTERNAL_NS, text)
            if not m:
                raise PlanError(f"--external {text}: expected net[INODE]:KEY or pid[INODE]:KEY")
            out.append((m.group(1), int(m.group(2)), m.group(3)))
    return tuple(out)


def inherit_fds(args) -> dict[str, int]:
    """--inherit-fd fd[N]:KEY -> {KEY: N}; N must be open in this process."""
    from .engine.errors import PlanError
    out = {}
    for spec in args.inherit_fd:
        m = re.fullmatch(INHERIT_FD, spec)
        if not m:
            raise PlanError(f"--inherit-fd {spec}: expected fd[N]:KEY")
        fd, key = int(m.group(1)), m.group(2)
        try:
            os.fstat(fd)
        except OSError:
            raise PlanError(f"--inherit-fd {spec}: fd {fd} is not open") from None
        out[key] = fd
    return out
