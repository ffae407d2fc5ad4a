"""`lxc-cr check`, the container part: what checkpointing LXC containers needs from this host,
and whether it is there.  Each probe looks at the real thing (a tool that runs, a bridge with
an address, a veth pair made and removed, the engine's own list of namespaces it refuses).
"""
from __future__ import annotations

import os
import shutil
import subprocess

from .busybox_ct import BRIDGE, PREFIX, REPO, bridge_address

# the namespaces an LXC container has of its own (besides user and time, which LXC leaves shared)
CONTAINER_NAMESPACES = ("pid", "mnt", "uts", "ipc", "net", "cgroup")


def _tools():
    missing = [t for t in ("lxc-checkpoint", "lxc-attach", "lxc-info", "lxc-create") if not shutil.which(t)]
    if missing:
        raise OSError(0, f"missing {', '.join(missing)} (make setup installs lxc)")
    out = subprocess.run(["lxc-checkpoint", "--version"], capture_output=True, text=True, timeout=10)
    return f"LXC {out.stdout.strip()}"


def _python_lxc():
    import lxc      # noqa: F401
    return ""


def _template():
    if not os.path.exists("/usr/share/lxc/templates/lxc-busybox"):
        raise OSError(0, "no /usr/share/lxc/templates/lxc-busybox (lxc-templates)")


def _bridge():
    address = bridge_address()
    if address is None:
        raise OSError(0, f"no {BRIDGE} with an IPv4 address (/usr/libexec/lxc/lxc-net start makes it)")
    return address


def _veth():
    from .engine.netlink import Rtnl
    name = f"{PREFIX}chk{os.getpid() % 1000}"
    with Rtnl() as ip:
        ip.link("add", ifname=name, kind="veth", peer={"ifname": f"{name}p"})
        ip.link("del", index=ip.link_lookup(ifname=name)[0])


def _criu_on_path():
    path = shutil.which("criu")
    ours = os.path.realpath(REPO / "hooks" / "criu")
    if path is None or os.path.realpath(path) != ours:
        raise OSError(0, f"`criu` on PATH is {path or 'missing'}; lxc-checkpoint needs {ours} first on PATH "
                         f"under the name criu")
    return path


def _freezer():
    if os.path.exists("/sys/fs/cgroup/freezer"):
        return "cgroup v1 freezer"
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(root, "cgroup.procs")):
            return f"cgroup2 cgroup.freeze ({root})"
    raise OSError(0, "no freezer cgroup")


def _engine_namespaces():
    from .engine.namespaces import REFUSED
    refused = [n for n in CONTAINER_NAMESPACES if n in REFUSED]
    if refused:
        raise OSError(0, f"the engine does not rebuild {', '.join(refused)} namespaces yet")
    return ", ".join(CONTAINER_NAMESPACES)


PROBES = [
    ("container: LXC tools", _tools),
    ("container: python3-lxc", _python_lxc),
    ("container: busybox template", _template),
    (f"container: {BRIDGE} bridge with an address", _bridge),
    ("container: veth pairs", _veth),
    ("container: freezer", _freezer),
    ("container: hooks/criu first on PATH as criu", _criu_on_path),
    ("container: engine rebuilds a container's namespaces", _engine_namespaces),
]


def report():
    from .engine.check import report as probe_all
    return probe_all(PROBES)
