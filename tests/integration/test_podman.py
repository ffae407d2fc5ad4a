"""podman (Debian's 4.3) with `--runtime runc` and our `criu` first on PATH: `podman container
checkpoint` and `restore` of a container made from a local busybox rootfs (`podman import`),
with --print-stats and with --export/--import.

podman's own probes (VERSION, FEATURE_CHECK) and runc's swrk sessions all reach hooks/criu
through PATH.  The container counts: "PID N" lines on its stdout (podman's log).  After a
restore its next line must follow the last line before the checkpoint (memory carried), with
PID 1 inside and the same host PID.

The container is on podman's default network (netavark, bridge podman0): its network
namespace is podman's (a path under /run/netns), which runc names external at checkpoint
(extRootNetNS) and hands back at restore; after a restore the container must be in the
namespace podman holds for it now, with its address.

A container in a pod shares the IPC, UTS and network namespaces of the pod's infra container:
at restore, runc hands the first two over as join_ns and the last as extRootNetNS.

One podman default is changed, for a reason of this host:
  nofile/nproc limits: podman raises both above this host's hard limits, which runc cannot
      do here (no CAP_SYS_RESOURCE), so `podman run` itself would fail: --ulimit for a
      container, default_ulimits in a containers.conf of the test's for a pod's infra container.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import NO_CR, REPO

BUSYBOX = Path("/bin/busybox")
COUNTER = "i=0; while :; do i=$((i+1)); echo \"$$ $i\"; sleep 0.05; done"
TIMEOUT = 120


class Podman:
    def __init__(self, tmp_path: Path):
        self.name = f"lxccr-podman-{os.getpid()}"
        self.image = f"localhost/lxccr-podman-busybox-{os.getpid()}"
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "criu").symlink_to(REPO / "hooks" / "criu")
        conf = tmp_path / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n')
        self.env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", CONTAINERS_CONF=str(conf))
        self.tmp = tmp_path
        self.pod = None

    def __call__(self, *argv, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run(["podman", "--runtime", "runc", *argv], capture_output=True, text=True,
                           env=self.env, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(argv)}: exit {r.returncode}: {r.stderr}{self.logs()}")
        return r

    def logs(self) -> str:
        r = subprocess.run(["podman", "inspect", "--format", "{{.StaticDir}}", self.name], capture_output=True,
                           text=True, timeout=TIMEOUT)
        static = Path(r.stdout.strip())
        return "".join(f"\n--- {p}\n{p.read_text()}" for p in (static / "dump.log", static / "restore.log")
                       if r.returncode == 0 and p.exists())

    def import_busybox(self) -> None:
        rootfs = self.tmp / "rootfs"
        for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
            (rootfs / d).mkdir(parents=True)
        shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
        for applet in ("sh", "cat", "sleep", "echo"):
            (rootfs / "bin" / applet).symlink_to("busybox")
        with tarfile.open(self.tmp / "rootfs.tar", "w") as tar:
            tar.add(rootfs, arcname=".")
        self("import", str(self.tmp / "rootfs.tar"), self.image)

    def run(self, *flags) -> None:
        self("run", "-d", "--name", self.name, "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=1024:1024", *flags, self.image, "/bin/sh", "-c", COUNTER)

    def make_pod(self) -> str:
        """A pod (its infra container running); returns its ID."""
        self.pod = f"lxccr-pod-{os.getpid()}"
        self("pod", "create", "--name", self.pod)
        self("pod", "start", self.pod)
        return self("pod", "inspect", "--format", "{{.ID}}", self.pod).stdout.strip()

    def infra_pid(self) -> int:
        infra = self("pod", "inspect", "--format", "{{.InfraContainerID}}", self.pod).stdout.strip()
        return int(self("inspect", "--format", "{{.State.Pid}}", infra).stdout)

    def lines(self) -> list[tuple[int, int]]:
        out = self("logs", self.name).stdout
        return [(int(a), int(b)) for a, b in (line.split() for line in out.splitlines())]

    def wait_for_lines(self, n: int) -> list[tuple[int, int]]:
        for _ in range(2000):
            lines = self.lines()
            if len(lines) >= n:
                return lines
            time.sleep(0.01)
        raise AssertionError(f"fewer than {n} lines from the container: {lines}")

    def state(self) -> dict:
        return json.loads(self("inspect", "--format", "{{json .State}}", self.name).stdout)

    def network(self) -> tuple[str, str]:
        """podman's network namespace of the container (its path) and the container's address."""
        net = json.loads(self("inspect", "--format", "{{json .NetworkSettings}}", self.name).stdout)
        return net["SandboxKey"], net["IPAddress"]

    def destroy(self) -> None:
        subprocess.run(["podman", "rm", "-f", self.name], capture_output=True, timeout=TIMEOUT)
        if self.pod:
            subprocess.run(["podman", "pod", "rm", "-f", self.pod], capture_output=True, timeout=TIMEOUT)
        subprocess.run(["podman", "rmi", "-f", self.image], capture_output=True, timeout=TIMEOUT)


@pytest.fixture
def podman(tmp_path):
    if NO_CR:
        pytest.skip("needs lxc-cr")
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("podman or runc is not installed")
    p = Podman(tmp_path)
    try:
        p.import_busybox()
        yield p
    finally:
        p.destroy()


def checkpoint(podman, *flags) -> tuple[int, int, str]:
    """Checkpoint (the container stops); returns its host PID, its last count and podman's output."""
    podman.wait_for_lines(2)
    host_pid = podman.state()["Pid"]
    r = podman("container", "checkpoint", *flags, podman.name)
    with contextlib.suppress(ChildProcessError):      # the dumped init, if it was reparented to us
        os.waitpid(host_pid, os.WNOHANG)
    assert podman.state()["Status"] == "exited"
    lines = podman.lines()
    assert {pid for pid, _ in lines} == {1}
    return host_pid, lines[-1][1], r.stdout


def goes_on(podman, host_pid: int, last: int) -> None:
    state = podman.state()
    assert state["Status"] == "running" and state["Pid"] == host_pid
    sandbox, address = podman.network()
    assert sandbox.startswith("/run/netns/") and address
    assert os.stat(f"/proc/{host_pid}/ns/net").st_ino == os.stat(sandbox).st_ino
    assert f" {address}\n" in podman("exec", podman.name, "cat", "/proc/net/fib_trie").stdout
    lines = podman.wait_for_lines(1)
    after = [line for line in lines if line[1] > last]
    for _ in range(2000):
        if after:
            break
        time.sleep(0.01)
        after = [line for line in podman.lines() if line[1] > last]
    assert after and after[0] == (1, last + 1), lines[-5:]


def test_podman_checkpoint_and_restore_with_stats(podman):
    """checkpoint and restore in place, with --print-stats: podman reads our stats-dump and
    stats-restore; the counter goes on with the same PIDs."""
    podman.run()
    host_pid, last, out = checkpoint(podman, "--print-stats")
    dumped = json.loads(out)["container_statistics"][0]["criu_statistics"]
    assert dumped["pages_written"] > 0 and {"freezing_time", "frozen_time", "memdump_time"} <= set(dumped)
    r = podman("container", "restore", "--print-stats", podman.name)
    restored = json.loads(r.stdout)["container_statistics"][0]["criu_statistics"]
    assert restored["pages_restored"] == dumped["pages_written"]
    goes_on(podman, host_pid, last)


def test_podman_export_and_import(podman):
    """checkpoint --export to an archive, the container removed, restore --import from it."""
    podman.run()
    archive = podman.tmp / "checkpoint.tar.gz"
    host_pid, last, _ = checkpoint(podman, "--export", str(archive))
    podman("rm", podman.name)
    podman("container", "restore", "--import", str(archive))
    goes_on(podman, host_pid, last)


def shares_the_pods_namespaces(podman, host_pid: int) -> None:
    infra = podman.infra_pid()
    for ns in ("ipc", "uts", "net"):
        assert os.stat(f"/proc/{host_pid}/ns/{ns}").st_ino == os.stat(f"/proc/{infra}/ns/{ns}").st_ino, ns
    assert podman("exec", podman.name, "cat", "/proc/sys/kernel/hostname").stdout.strip() == podman.pod


def test_podman_container_in_a_pod(podman):
    """A container of a pod: restored in place, then from an exported archive into the pod
    (restore --import --pod), each time into the namespaces the infra container holds."""
    pod_id = podman.make_pod()
    podman.run("--pod", podman.pod)
    shares_the_pods_namespaces(podman, podman.state()["Pid"])
    host_pid, last, _ = checkpoint(podman)
    podman("container", "restore", podman.name)
    goes_on(podman, host_pid, last)
    shares_the_pods_namespaces(podman, host_pid)
    archive = podman.tmp / "checkpoint.tar.gz"
    host_pid, last, _ = checkpoint(podman, "--export", str(archive))
    podman("rm", podman.name)
    podman("container", "restore", "--import", str(archive), "--pod", pod_id)
    goes_on(podman, host_pid, last)
    shares_the_pods_namespaces(podman, host_pid)
