"""Policies (lxc_cr/policy.py): precedence, every setting's effect on a real dump or restore,
and malformed files rejected before anything is frozen.

The counter program (8 MiB it verifies on SIGUSR1) is the tree; policy files are written
per test, and the line numbers expected in origins are found in the text the test wrote.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import LXC_CR, Program, lxc_cr, one_line_error


def write_policy(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def plan_of(prog, *args) -> dict:
    res = lxc_cr("plan", "-t", str(prog.pid), *args)
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def contents(directory) -> dict:
    return {n: hashlib.sha256((directory / n).read_bytes()).hexdigest()
            for n in os.listdir(directory) if n != "restore.log"}


@pytest.fixture
def program(tmp_path):
    p = Program(tmp_path)
    yield p
    p.stop()


def test_precedence_site_then_rules_then_command_line(tmp_path, program):
    site = """\
site:
  file_locks: true
  ghost_limit: 2M
  compress: zstd
"""
    rules = """\
containers:
  - match: {entrypoint: cli}
    set:
      ghost_limit: 3M
      tcp_established: true
  - match: {entrypoint: [lxc, rpc]}
    set:
      file_locks: false
  - match: {name: "web-*"}
    set:
      compress: none
"""
    a = write_policy(tmp_path / "a.yaml", site)
    b = write_policy(tmp_path / "b.yaml", rules)
    plan = plan_of(program, "--policy", a, "--policy", b, "--ghost-limit", "5M")
    s = plan["settings"]
    assert s["file_locks"] == {"value": True, "from": f"{a}:{line_of(site, 'file_locks')} (site)"}
    assert s["compress"]["value"] == "zstd"                 # the web-* rule needs a container name
    assert s["tcp_established"]["value"] is True
    assert s["tcp_established"]["from"].startswith(f"{b}:{line_of(rules, 'tcp_established')} (rule")
    assert s["ghost_limit"] == {"value": 5 << 20, "from": "command line"}
    assert s["leave_running"] == {"value": False, "from": "built-in default"}
    assert plan["blocking"] == []
    without_cli = plan_of(program, "--policy", a, "--policy", b)["settings"]
    assert without_cli["ghost_limit"]["value"] == 3 << 20    # the rule over the site default


def test_leave_running_and_actions_from_a_policy(tmp_path, program):
    marks = tmp_path / "marks"
    pol = write_policy(tmp_path / "p.yaml", f"""\
site:
  leave_running: true
  pre_dump: 'echo "$LXC_CR_ACTION $LXC_CR_PID $LXC_CR_IMAGES_DIR" >> {marks}'
  post_dump: 'echo "$LXC_CR_ACTION $LXC_CR_PID $(test -f $LXC_CR_IMAGES_DIR/inventory.img && echo complete)" >> {marks}'
""")
    d = tmp_path / "d"
    res = lxc_cr("dump", "-t", str(program.pid), "-D", str(d), "--policy", pol)
    assert res.returncode == 0, res.stderr
    assert marks.read_text().splitlines() == [f"pre-dump {program.pid} {d}", f"post-dump {program.pid} complete"]
    program.untouched()
    assert (d / "inventory.img").exists()


@pytest.mark.parametrize("point", ["pre_dump", "post_dump"])
def test_a_failing_action_leaves_the_tree_as_it_was(tmp_path, program, point):
    pol = write_policy(tmp_path / "p.yaml", f"site:\n  {point}: 'echo refused by the site >&2; exit 3'\n")
    d = tmp_path / "d"
    line = one_line_error(lxc_cr("dump", "-t", str(program.pid), "-D", str(d), "--policy", pol))
    assert point in line and "refused by the site" in line
    program.untouched()
    assert not (d / "inventory.img").exists()


def test_compression_and_retention(tmp_path, program):
    base = tmp_path / "store"
    pol = write_policy(tmp_path / "p.yaml", f"""\
site:
  leave_running: true
  compress: zstd
  images_dir: {base}/{{name}}/{{time}}
  keep: 2
""")
    for _ in range(3):
        res = lxc_cr("dump", "-t", str(program.pid), "--policy", pol)
        assert res.returncode == 0, res.stderr
    dumps = sorted((base / f"pid{program.pid}").iterdir())
    assert len(dumps) == 2
    newest = dumps[-1]
    pages = [n for n in os.listdir(newest) if n.startswith("pages-")]
    assert pages == [f"pages-{program.pid}.img.zst"]
    assert os.stat(newest / pages[0]).st_mode & 0o777 == 0o600
    before = contents(newest)
    os.killpg(program.pid, signal.SIGKILL)
    program.proc.wait()
    marks = tmp_path / "restored"
    restore_pol = write_policy(tmp_path / "r.yaml", f"site:\n  post_restore: 'echo $LXC_CR_PID > {marks}'\n")
    res = lxc_cr("restore", "-D", str(newest), "-d", "--policy", restore_pol)
    assert res.returncode == 0, res.stderr
    assert contents(newest) == before              # a restore never changes the images
    assert marks.read_text().strip() == str(program.pid)
    os.kill(program.pid, signal.SIGUSR1)
    program.wait_for("MiB intact")


def test_ghost_limit_from_policy_and_command_line(tmp_path):
    ghost = tmp_path / "ghost"
    fd = os.open(ghost, os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(3 << 20))
    os.unlink(ghost)
    prog = Program(tmp_path, extra_setup=(fd,))
    os.close(fd)
    try:
        pol = write_policy(tmp_path / "p.yaml", "site:\n  ghost_limit: 1M\n")
        line = one_line_error(lxc_cr("dump", "-t", str(prog.pid), "-D", str(tmp_path / "d1"), "--policy", pol))
        assert "ghost limit" in line and str(1 << 20) in line
        prog.untouched()
        res = lxc_cr("dump", "-t", str(prog.pid), "-D", str(tmp_path / "d2"), "--policy", pol,
                     "--ghost-limit", "4M", "--leave-running")
        assert res.returncode == 0, res.stderr
        prog.untouched()
    finally:
        prog.stop()


def test_skip_on_unsupported_means_skipping_half_open_connections(tmp_path, program):
    pol = write_policy(tmp_path / "p.yaml", "site:\n  on_unsupported: skip\n")
    s = plan_of(program, "--policy", pol)["settings"]
    assert s["on_unsupported"]["value"] == "skip"
    assert s["skip_in_flight"]["value"] is False    # the setting itself; the plan derives from both


MALFORMED = {
    "unknown setting": ("site:\n  leave_runing: true\n", 2, "unknown setting 'leave_runing'"),
    "wrong type": ("site:\n  file_locks: yes please\n", 2, "expected true or false"),
    "bad size": ("site:\n  ghost_limit: lots\n", 2, "expected a size"),
    "bad choice": ("site:\n  compress: rar\n", 2, "expected one of none, zstd"),
    "bad yaml": ("site:\n  file_locks: [true\n", 3, "not valid YAML"),
    "unknown section": ("sites:\n  file_locks: true\n", 2, "unknown section 'sites'"),
    "rule without set": ("containers:\n  - match: {name: a}\n", 2, "a rule needs 'set'"),
    "bad entrypoint": ("containers:\n  - match: {entrypoint: ssh}\n    set: {file_locks: true}\n", 2,
                       "entrypoint must be"),
    "relative images_dir": ("site:\n  images_dir: dumps/{name}\n", 2, "expected an absolute path"),
    "repeated key": ("site:\n  keep: 1\n  keep: 2\n", 3, "'keep' given twice"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_policy_is_rejected_before_freezing(tmp_path, program, case):
    text, line, reason = MALFORMED[case]
    pol = write_policy(tmp_path / "bad.yaml", text)
    err = one_line_error(lxc_cr("dump", "-t", str(program.pid), "-D", str(tmp_path / "d"), "--policy", pol))
    assert f"{pol}:{line}:" in err and reason in err
    assert not (tmp_path / "d").exists()
    program.untouched()


def test_site_directory_is_read_by_default(tmp_path, program):
    """Without --policy, /etc/lxc-cr/*.yaml apply.  Our files are bound over that directory
    in a private mount namespace, so the host's policies are neither read nor touched."""
    site = tmp_path / "etc-lxc-cr"
    site.mkdir()
    (site / "10-site.yaml").write_text("site:\n  file_locks: true\n")
    created = not os.path.isdir("/etc/lxc-cr")
    os.makedirs("/etc/lxc-cr", exist_ok=True)
    try:
        script = f"mount --bind {site} /etc/lxc-cr && exec {LXC_CR} plan -t {program.pid}"
        res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                             capture_output=True, text=True, timeout=60)
    finally:
        if created:
            os.rmdir("/etc/lxc-cr")
    assert res.returncode == 0, res.stderr
    s = yaml.safe_load(res.stdout)["settings"]
    assert s["file_locks"] == {"value": True, "from": "/etc/lxc-cr/10-site.yaml:2 (site)"}


SHIPPED = sorted(str(p) for p in (Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_policies_are_valid(program, path):
    plan_of(program, "--policy", path)
