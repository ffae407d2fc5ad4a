"""A busybox LXC container made fit for checkpointing, for `make demo`, bench/ and the tests;
the lxcbr0 bridge it needs; our `criu` first on PATH for lxc-checkpoint.

Containers (runtimes.md §2.6 says why each setting): `lxc.tty.max = 0` (the restore
monitor crashes otherwise), `lxc.pty.max = 1` with the console, no `lxc.apparmor.*` lines,
a static IPv4 address and gateway instead of udhcpc.  The payload, started by busybox init:
syslogd, a shell loop counting into /tmp/count (also on its own open /var/log/counter.log),
a TCP listener on port 7000 (`nc -ll`, answering "hello HOSTNAME COUNT"), and a shell on the
console (`askfirst`).  /bin/crcheck inside saves the container's state (`crcheck save`)
and checks it later (`crcheck verify`: PASS, or FAIL lines).

Names start with `crlxc-`; addresses are 10.0.3.200-219.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = "crlxc-"
BRIDGE = "lxcbr0"
BRIDGE_ADDR = ("10.0.3.1", 24)
PORT = 7000
LXC_PATH = Path("/var/lib/lxc")
PATIENCE = 30.0
TRANSIENT = ("sleep", "crhello", "mv", "cat", "hostname")     # the payload's short-lived commands           # a container starting, a listener coming up (a guard against hangs only)

RCS = """#!/bin/sh
/bin/syslogd
/bin/mount -a
/bin/crcounter &
/bin/nc -ll -p {port} -e /bin/crhello &
"""
INITTAB = """::sysinit:/etc/init.d/rcS
console::askfirst:/bin/sh
"""
COUNTER = """#!/bin/sh
# counts for ever: /tmp/count holds the last value, the open log gets every one
exec 3>>/var/log/counter.log
n=0
while :; do
    n=$((n+1))
    echo $n > /tmp/count.new && mv /tmp/count.new /tmp/count
    echo "count $n" >&3
    sleep 0.2
done
"""
HELLO = """#!/bin/sh
echo "hello $(hostname) $(cat /tmp/count)"
"""
# The state that must survive a checkpoint, seen from inside.  Transient processes (the
# counter's sleep, the listener's handlers, this script and lxc-attach) are left out.
CHECK = r"""#!/bin/sh
state() {
    echo "hostname $(hostname)"
    # descendants of init, with their command and open files (inode numbers of sockets
    # and pipes are new after a restore: only their kind counts)
    tree=" 1 "
    changed=1
    while [ $changed = 1 ]; do
        changed=0
        for d in /proc/[0-9]*; do
            p=${d#/proc/}
            case "$tree" in *" $p "*) continue ;; esac
            pp=$(sed -n 's/^PPid:\t*//p' $d/status 2>/dev/null)
            case "$tree" in *" $pp "*) tree="$tree$p "; changed=1 ;; esac
        done
    done
    for p in $tree; do
        comm=$(cat /proc/$p/comm 2>/dev/null) || continue
        case "$comm" in sleep|crhello|crcheck|hostname|cat|mv) continue ;; esac
        echo "process $p $comm tty $(cut -d' ' -f7 /proc/$p/stat)"
        for fd in /proc/$p/fd/*; do
            echo "  fd ${fd##*/} $(readlink $fd | sed 's/:\[[0-9]*\]//')"
        done
    done
    ip -4 addr | grep -o 'inet [0-9./]*'
    ip link show eth0 | grep -o 'link/ether [0-9a-f:]*'
    ip route
    sort /proc/mounts     # the same mounts; their order is the order they were made in
    netstat -ltn | grep LISTEN
}
case "$1" in
save) state > /tmp/crcheck.saved; echo SAVED ;;
verify)
    state > /tmp/crcheck.now
    if cmp -s /tmp/crcheck.saved /tmp/crcheck.now; then echo PASS; else
        diff /tmp/crcheck.saved /tmp/crcheck.now | sed 's/^/FAIL: /'; fi ;;
esac
"""


def run(cmd, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: exit {r.returncode}: {r.stdout}{r.stderr}")
    return r


# --- the host ---------------------------------------------------------------------------------

def lxc_missing() -> str | None:
    """What this host lacks to run LXC containers here (the packages come from `make setup`)."""
    for tool in ("lxc-create", "lxc-checkpoint", "lxc-attach"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (make setup installs lxc)"
    if not Path("/usr/share/lxc/templates/lxc-busybox").exists():
        return "the busybox template is missing (lxc-templates)"
    return None


def bridge_address() -> str | None:
    """The bridge's first IPv4 address; None if it has none or does not exist."""
    from .engine.netlink import Rtnl
    with Rtnl() as ip:
        links = ip.link_lookup(ifname=BRIDGE)
        for a in ip.get_addr() if links else ():
            if a["index"] == links[0] and a["family"] == socket.AF_INET:
                return a.get_attr("IFA_ADDRESS")
    return None


def ensure_bridge() -> None:
    """lxcbr0 with 10.0.3.1/24, up: through lxc-net where it works, else made here."""
    if bridge_address():
        _up()
        return
    for cmd in (["systemctl", "start", "lxc-net"], ["/usr/libexec/lxc/lxc-net", "start"]):
        if shutil.which(cmd[0]) and run(cmd, check=False).returncode == 0 and bridge_address():
            _up()
            return
    from .engine.netlink import Rtnl
    with Rtnl() as ip:
        if not ip.link_lookup(ifname=BRIDGE):
            ip.link("add", ifname=BRIDGE, kind="bridge")
        index = ip.link_lookup(ifname=BRIDGE)[0]
        ip.addr("add", index=index, family=socket.AF_INET, address=BRIDGE_ADDR[0], prefixlen=BRIDGE_ADDR[1])
    _up()


def _up() -> None:
    from .engine.netlink import Rtnl
    with Rtnl() as ip:
        ip.link("set", index=ip.link_lookup(ifname=BRIDGE)[0], state="up")


class CriuOnPath:
    """A directory holding `criu` -> hooks/criu (or another target), for the PATH of lxc-checkpoint."""

    def __init__(self, target: Path = REPO / "hooks" / "criu"):
        self.dir = tempfile.mkdtemp(prefix=f"{PREFIX}path-")
        os.symlink(target, os.path.join(self.dir, "criu"))

    def env(self, **extra) -> dict:
        return dict(os.environ, PATH=f"{self.dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
                    **extra)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# --- containers -------------------------------------------------------------------------------

class Container:
    def __init__(self, purpose: str, number: int):
        if not 0 <= number < 20:
            raise ValueError("container numbers are 0-19 (addresses 10.0.3.200-219)")
        self.name = f"{PREFIX}{purpose}"
        self.ip = f"10.0.3.{200 + number}"
        self.rootfs = LXC_PATH / self.name / "rootfs"

    # -- life cycle

    def create(self) -> "Container":
        self.destroy()
        run(["lxc-create", "-t", "busybox", "-n", self.name])
        self._configure()
        return self

    def _configure(self) -> None:
        config = LXC_PATH / self.name / "config"
        lines = [l for l in config.read_text().splitlines()
                 if not l.startswith(("lxc.apparmor.", "lxc.tty.max", "lxc.pty.max"))]
        lines += ["lxc.tty.max = 0", "lxc.pty.max = 1", "lxc.net.0.name = eth0",
                  f"lxc.net.0.ipv4.address = {self.ip}/24", f"lxc.net.0.ipv4.gateway = {BRIDGE_ADDR[0]}"]
        config.write_text("\n".join(lines) + "\n")
        for path, text in (("etc/init.d/rcS", RCS.format(port=PORT)), ("etc/inittab", INITTAB),
                           ("bin/crcounter", COUNTER), ("bin/crhello", HELLO), ("bin/crcheck", CHECK)):
            f = self.rootfs / path
            f.write_text(text)
            f.chmod(0o755)

    def start(self) -> None:
        run(["lxc-start", "-n", self.name])
        self.wait_payload()

    def wait_payload(self) -> None:
        end = time.monotonic() + PATIENCE
        while True:
            try:
                said = self.hello()
                if said.startswith("hello"):
                    return
            except OSError as e:
                said = str(e)
            if time.monotonic() > end:
                raise RuntimeError(f"{self.name}: the payload did not come up ({said}): {self.info()}")
            time.sleep(0.1)

    def stop(self) -> subprocess.CompletedProcess:
        return run(["lxc-stop", "-k", "-n", self.name], check=False)

    def destroy(self) -> None:
        if (LXC_PATH / self.name).exists():
            self.stop()
            run(["lxc-destroy", "-f", "-n", self.name], check=False)

    # -- looking at it

    def info(self) -> dict:
        r = run(["lxc-info", "-n", self.name], check=False)
        out = {}
        for line in r.stdout.splitlines():
            key, _, value = line.partition(":")
            out.setdefault(key.strip(), value.strip())
        return out

    def state(self) -> str:
        return self.info().get("State", "?")

    def init_pid(self) -> int:
        return int(self.info().get("PID", 0))

    def attach(self, *cmd) -> subprocess.CompletedProcess:
        return run(["lxc-attach", "-n", self.name, "--", *cmd], check=False)

    def count(self) -> int:
        return int((self.rootfs / "tmp" / "count").read_text())

    def hello(self) -> str:
        """What the listener says to a connection from the host, over the bridge."""
        with socket.create_connection((self.ip, PORT), timeout=5) as s:
            s.settimeout(5)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return data.decode()

    def payload_pids(self) -> set[int]:
        """Host PIDs of the container's lasting tasks (its init's tree, without the counter's
        sleeps and the listener's handlers, which come and go)."""
        init = self.init_pid()
        out, todo = set(), [init] if init else []
        while todo:
            pid = todo.pop()
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() not in TRANSIENT:
                    out.add(pid)
                for tid in os.listdir(f"/proc/{pid}/task"):
                    todo += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                pass            # gone meanwhile
        return out

    # -- checkpoint and restore, the way users run them

    def checkpoint(self, images: Path, path: CriuOnPath, stop: bool, **env) -> subprocess.CompletedProcess:
        cmd = ["lxc-checkpoint", "-n", self.name, "-D", images, "-v"] + (["-s"] if stop else [])
        return run(cmd, check=False, env=path.env(**env))

    def restore(self, images: Path, path: CriuOnPath, log: Path, **env) -> int:
        """lxc-checkpoint -r in a session of its own (the monitor it leaves does not detach),
        its output in a file (the monitor keeps its stderr open).  Returns its exit status."""
        with open(log, "ab") as out:
            r = subprocess.run(["lxc-checkpoint", "-r", "-n", self.name, "-D", str(images), "-v"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                               env=path.env(**env))
        return r.returncode

    # -- what a failed restore must not leave behind

    def host_objects(self) -> set[str]:
        """veths on the bridge, the container's cgroups and mounts, as seen from the host:
        compare the sets before and after a restore."""
        from .engine.netlink import Rtnl
        out = set()
        with Rtnl() as ip:
            bridge = ip.link_lookup(ifname=BRIDGE)
            for link in ip.get_links():
                if bridge and link.get_attr("IFLA_MASTER") == bridge[0]:
                    out.add(f"veth {link.get_attr('IFLA_IFNAME')} on {BRIDGE}")
        for root in Path("/sys/fs/cgroup").iterdir():
            out |= {f"cgroup {c}" for c in root.glob(f"lxc.payload.{self.name}*")}
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            if f"/{self.name}/" in line.split()[4]:
                out.add(f"mount {line.split()[4]}")
        return out
