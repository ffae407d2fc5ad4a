"""Cgroup controller properties: which ones are carried, how they are read, checked and set.

Carried (when the file exists in the dumped cgroup):
  memory   v1 memory.limit_in_bytes, memory.memsw.limit_in_bytes, memory.soft_limit_in_bytes;
           v2 memory.max, memory.high, memory.low, memory.swap.max
  pids     pids.max
  cpu      v1 cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us; v2 cpu.weight, cpu.max
  cpuset   cpuset.cpus, cpuset.mems (first: a v1 cpuset without them takes no task)
  devices  v1 devices.list, set back as "deny all" then one allow per line
  cgroup2  cgroup.subtree_control (controllers enabled for the cgroups below)
Everything else (statistics, events, freezer state) is the kernel's or the freezer's.

Values are checked against a strict pattern before they are written (images are
untrusted).  A value equal to the one present is not written again, so restoring
into the cgroup the tree came from changes nothing.  Limits that constrain each
other (memsw >= limit, quota within period) are retried once in the other order.
"""
from __future__ import annotations

import errno
import logging
import os
import re

from .errors import ImageError, RestoreError

log = logging.getLogger("lxc_cr.cgroups")

# in the order they are written
PROPS = ("cgroup.subtree_control", "cpuset.cpus", "cpuset.mems",
         "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
         "memory.max", "memory.high", "memory.low", "memory.swap.max",
         "pids.max", "cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.weight", "cpu.max",
         "devices.list")

VALUE = r"[0-9a-z ,\-+]{0,256}"
DEVICE_RULE = r"[abc] (\*|[0-9]+):(\*|[0-9]+) [rwm]{1,3}"
MAX_DEVICE_RULES = 4096


def read(directory: str) -> list[tuple[str, str]]:
    """(name, value) of every carried property present in this cgroup directory."""
    out = []
    for name in PROPS:
        try:
            with open(os.path.join(directory, name)) as f:
                value = f.read().strip()
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
                continue            # present but not readable here (no swap accounting...)
            raise
        out.append((name, value))
    return out


def validate(props, where: str) -> None:
    seen = set()
    for p in props:
        if p.name not in PROPS or p.name in seen:
            raise ImageError(f"{where}: unknown or repeated cgroup property {p.name!r}")
        seen.add(p.name)
        if p.name == "devices.list":
            rules = p.value.splitlines()
            if len(rules) > MAX_DEVICE_RULES or not all(re.fullmatch(DEVICE_RULE, r) for r in rules):
                raise ImageError(f"{where}: bad devices.list {p.value[:80]!r}")
        elif not re.fullmatch(VALUE, p.value):
            raise ImageError(f"{where}: bad value {p.value[:80]!r} for {p.name}")


def apply(directory: str, props) -> None:
    """Write props into an existing cgroup, before any task of the tree enters it."""
    pending = [(p.name, p.value) for p in props]
    for last_round in (False, True):
        retry = []
        for name, value in pending:
            try:
                _set(directory, name, value)
            except OSError as e:
                # memsw below limit, quota above period...: the other order may work
                if e.errno == errno.EINVAL and not last_round:
                    retry.append((name, value))
                    continue
                raise RestoreError(f"cannot set {name} = {value!r} in cgroup {directory}: "
                                   f"{e.strerror}") from None
        pending = retry
        if not pending:
            return


def _set(directory: str, name: str, value: str) -> None:
    path = os.path.join(directory, name)
    if name == "devices.list":
        _set_devices(directory, value)
        return
    if name == "cgroup.subtree_control":
        have = set(_read(path).split())
        want = set(value.split())
        value = " ".join([f"+{c}" for c in sorted(want - have)] + [f"-{c}" for c in sorted(have - want)])
        if not value:
            return
    elif not os.path.exists(path):
        log.warning("cgroup %s has no %s here (controller not enabled?); not set", directory, name)
        return
    elif _read(path) == value:
        return
    _write(path, value)
    log.debug("cgroup %s: %s = %s", directory, name, value)


def _set_devices(directory: str, rules: str) -> None:
    if _read(os.path.join(directory, "devices.list")) == rules:
        return
    _write(os.path.join(directory, "devices.deny"), "a")
    for rule in rules.splitlines():
        _write(os.path.join(directory, "devices.allow"), rule)
    log.debug("cgroup %s: devices.list = %s", directory, rules.replace("\n", "; "))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)
