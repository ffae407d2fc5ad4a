"""Policies: YAML files that choose checkpoint settings per container and per entrypoint.

A policy file has two optional sections:

    site:                         # this host's defaults
      file_locks: true
    containers:                   # rules; every rule that matches applies, later ones win
      - match:
          name: "web-*"           # shell pattern on the container name
          labels: {tier: "front*"}  # every label must be present and match its pattern
          entrypoint: [lxc, rpc]  # cli (lxc-cr), lxc (lxc-checkpoint), rpc (runc, crun, podman)
        set:
          tcp_established: true

Precedence, lowest first: built-in default, `site:` of every file, matching `containers:`
rules of every file, then the command line or the RPC request.  Files are read in order:
the policy files named by the caller, else every *.yaml in /etc/lxc-cr (sorted).

Every setting the resolution produces carries where it came from (`Setting.origin`), so that
`lxc-cr plan` can say why a checkpoint will do what it does.  A malformed file is rejected
with its path, line and reason (PolicyError) before anything is frozen.
"""
from __future__ import annotations

import fnmatch
import glob
import os
import re
from typing import NamedTuple

from .engine import CGROUP_MODES
from .engine.errors import PlanError

SITE_DIR = "/etc/lxc-cr"
ENTRYPOINTS = ("cli", "lxc", "rpc")


class PolicyError(PlanError):
    """A policy file that cannot be used: names the file, the line and the reason."""


class Setting(NamedTuple):
    value: object
    origin: str         # "built-in default", "command line", "/etc/lxc-cr/site.yaml:7 (site)", ...


def _bool(value, where):
    if not isinstance(value, bool):
        raise PolicyError(f"{where}: expected true or false, got {value!r}")
    return value


def parse_size(value, where):
    """A byte count: an integer, or a number with a K, M or G suffix (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = re.fullmatch(r"(\d+)\s*([KMG]?)i?B?", str(value).strip(), re.IGNORECASE)
    if not m:
        raise PolicyError(f"{where}: expected a size such as 1048576 or 16M, got {value!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def _count(value, where):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PolicyError(f"{where}: expected a whole number of at least 1, got {value!r}")
    return value


def _choice(*names):
    def check(value, where):
        if value not in names:
            raise PolicyError(f"{where}: expected one of {', '.join(names)}, got {value!r}")
        return value
    return check


def _path_template(value, where):
    if not isinstance(value, str) or not value.startswith("/"):
        raise PolicyError(f"{where}: expected an absolute path, got {value!r}")
    try:
        value.format(name="n", entrypoint="e", time="t")
    except (KeyError, IndexError, ValueError) as e:
        raise PolicyError(f"{where}: bad template {value!r} (fields: {{name}}, {{entrypoint}}, "
                          f"{{time}}): {e}") from None
    return value


def _command(value, where):
    if isinstance(value, str) and value.strip():
        return value
    raise PolicyError(f"{where}: expected a shell command, got {value!r}")


# name -> (checker, built-in default, what it means); the plan builders read these names
SETTINGS = {
    "leave_running": (_bool, False, "leave the tree running after a dump"),
    "tcp_established": (_bool, False, "dump and restore established TCP connections"),
    "ext_unix_sk": (_bool, False, "allow unix sockets whose peer is outside the tree"),
    "file_locks": (_bool, False, "dump and restore file locks"),
    "skip_in_flight": (_bool, False, "leave out half-open TCP connections"),
    "manage_cgroups": (_choice(*CGROUP_MODES), "soft", "what restore does with cgroups"),
    "ghost_limit": (parse_size, 64 << 20, "largest unlinked open file whose content is saved"),
    "images_dir": (_path_template, None, "where images go: {name}, {entrypoint}, {time}"),
    "keep": (_count, None, "how many image directories of a container to keep"),
    "compress": (_choice("none", "zstd"), "none", "compression of page files"),
    "on_unsupported": (_choice("fail", "skip"), "fail", "what an object we cannot dump does"),
    "pre_dump": (_command, None, "command run before the tree is frozen"),
    "post_dump": (_command, None, "command run after the images are written"),
    "post_restore": (_command, None, "command run once the tree runs again"),
}


class Rule:
    """One `containers:` rule; its match (name, labels, entrypoints) is filled in as it is parsed."""

    def __init__(self, where: str, name: str | None, labels: dict, entrypoints: tuple, settings: dict):
        self.where = where              # "FILE:LINE"
        self.name = name                # shell pattern on the container name; None: any
        self.labels = labels            # label -> shell pattern
        self.entrypoints = entrypoints
        self.settings = settings        # name -> (value, "FILE:LINE")

    def matches(self, name: str | None, labels: dict, entrypoint: str) -> bool:
        if entrypoint not in self.entrypoints:
            return False
        if self.name is not None and (name is None or not fnmatch.fnmatchcase(name, self.name)):
            return False
        return all(key in labels and fnmatch.fnmatchcase(str(labels[key]), pattern)
                   for key, pattern in self.labels.items())


class PolicyFile:
    """One policy file, parsed."""

    def __init__(self, path: str, site: dict, rules: list):
        self.path = path
        self.site = site                # name -> (value, "FILE:LINE")
        self.rules = rules              # Rule


def default_files() -> list[str]:
    return sorted(glob.glob(os.path.join(SITE_DIR, "*.yaml")))


def load(paths: list[str]) -> list[PolicyFile]:
    return [load_file(p) for p in paths]


def load_file(path: str) -> PolicyFile:
    import yaml
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise PolicyError(f"{path}: cannot read: {e.strerror}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise PolicyError(f"{path}{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
    policy = PolicyFile(path=path, site={}, rules=[])
    if root is None:
        return policy
    top = _mapping(root, path, "a policy")
    for key, node in top.items():
        if key == "site":
            policy.site = _settings(node, path)
        elif key == "containers":
            if not isinstance(node, yaml.SequenceNode):
                raise PolicyError(f"{_at(path, node)}: 'containers' must be a list of rules")
            policy.rules = [_rule(item, path) for item in node.value]
        else:
            raise PolicyError(f"{_at(path, node)}: unknown section {key!r} (site, containers)")
    return policy


def _at(path: str, node) -> str:
    return f"{path}:{node.start_mark.line + 1}"


def _mapping(node, path: str, what: str) -> dict:
    """A mapping node's entries as {key: value node}, refusing non-string and repeated keys."""
    import yaml
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(f"{_at(path, node)}: {what} must be a mapping")
    out = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str):
            raise PolicyError(f"{_at(path, key_node)}: keys must be names")
        if key in out:
            raise PolicyError(f"{_at(path, key_node)}: {key!r} given twice")
        out[key] = value_node
    return out


def _construct(node):
    import yaml
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def _settings(node, path: str) -> dict:
    out = {}
    for key, value_node in _mapping(node, path, "a settings block").items():
        where = _at(path, value_node)
        if key not in SETTINGS:
            raise PolicyError(f"{where}: unknown setting {key!r} (known: {', '.join(SETTINGS)})")
        check = SETTINGS[key][0]
        out[key] = (check(_construct(value_node), f"{where}: {key}"), where)
    return out


def _rule(node, path: str) -> Rule:
    entries = _mapping(node, path, "a container rule")
    unknown = set(entries) - {"match", "set"}
    if unknown:
        key = sorted(unknown)[0]
        raise PolicyError(f"{_at(path, entries[key])}: unknown key {key!r} in a rule (match, set)")
    if "set" not in entries:
        raise PolicyError(f"{_at(path, node)}: a rule needs 'set'")
    rule = Rule(where=_at(path, node), name=None, labels={}, entrypoints=ENTRYPOINTS,
                settings=_settings(entries["set"], path))
    match = _mapping(entries["match"], path, "'match'") if "match" in entries else {}
    for key, value_node in match.items():
        where = _at(path, value_node)
        value = _construct(value_node)
        if key == "name":
            if not isinstance(value, str) or not value:
                raise PolicyError(f"{where}: name must be a pattern such as web-*")
            rule.name = value
        elif key == "labels":
            if not isinstance(value, dict) or not all(isinstance(v, (str, int)) for v in value.values()):
                raise PolicyError(f"{where}: labels must map label names to patterns")
            rule.labels = {str(k): str(v) for k, v in value.items()}
        elif key == "entrypoint":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or any(n not in ENTRYPOINTS for n in names):
                raise PolicyError(f"{where}: entrypoint must be one or more of {', '.join(ENTRYPOINTS)}")
            rule.entrypoints = tuple(names)
        else:
            raise PolicyError(f"{where}: unknown match key {key!r} (name, labels, entrypoint)")
    return rule


def resolve(files: list[PolicyFile], entrypoint: str, explicit: dict, explicit_origin: str,
            name: str | None = None, labels: dict | None = None) -> dict[str, Setting]:
    """Every setting with its value and origin.  explicit: what the command line or the RPC
    request set (names of SETTINGS; absent means not given)."""
    if entrypoint not in ENTRYPOINTS:
        raise ValueError(entrypoint)
    labels = labels or {}
    out = {key: Setting(spec[1], "built-in default") for key, spec in SETTINGS.items()}
    for f in files:
        for key, (value, where) in f.site.items():
            out[key] = Setting(value, f"{where} (site)")
    for f in files:
        for rule in f.rules:
            if rule.matches(name, labels, entrypoint):
                for key, (value, where) in rule.settings.items():
                    out[key] = Setting(value, f"{where} (rule at line {rule.where.rsplit(':', 1)[1]})")
    for key, value in explicit.items():
        if key not in SETTINGS:
            raise ValueError(key)
        out[key] = Setting(value, explicit_origin)
    return out
