"""Benchmark: `lxc-checkpoint -s` and `lxc-checkpoint -r` of the busybox container.

Each of RUNS rounds creates nothing new: one container (lxc_cr/busybox_ct.py) is
checkpointed with -s and restored again, timing both commands, with our hooks/criu
first on PATH (and, when a `criu` of version 4.1 or newer is installed, with it too).
A round whose restore does not bring the container back RUNNING with the same init
PID aborts the benchmark.  The results replace the "LXC containers" section of
docs/BENCHMARKS.md; when the engine cannot checkpoint the container yet, the
section says so, with the blockers `lxc-cr plan --lxc` lists.  Nothing is asserted.

    .venv/bin/python bench/containers.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from lxc_cr import busybox_ct as ct          # noqa: E402
from lxc_cr.lxc_plan import blockers         # noqa: E402
from run import OUT, criu_tool, summary      # noqa: E402

HEADER = "## LXC containers"


def one_round(c, path, work: str) -> dict[str, float]:
    images = os.path.join(work, "images")
    init = c.init_pid()
    t0 = time.perf_counter()
    r = c.checkpoint(images, path, stop=True)
    checkpoint = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"lxc-checkpoint -s failed: {r.stdout}{r.stderr}")
    reap_until_gone(init)
    t0 = time.perf_counter()
    code = c.restore(images, path, os.path.join(work, "restore.out"))
    restore = time.perf_counter() - t0
    if code != 0 or c.state() != "RUNNING" or c.init_pid() != init:
        raise SystemExit(f"lxc-checkpoint -r failed (exit {code}, state {c.state()})")
    shutil.rmtree(images)
    return {"checkpoint": checkpoint, "restore": restore}


def reap_until_gone(pid: int) -> None:
    """LXC's restore monitor leaves the init it restored to its own parent when both end; on
    this host PID 1 reaps nothing, so the init's PID stays taken unless we (a subreaper, see
    main) reap it: the next round restores that PID."""
    end = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}"):
        try:
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        if time.monotonic() > end:
            raise SystemExit(f"the checkpointed init {pid} is still there")
        time.sleep(0.01)


def section(rows: list[str], note: str) -> str:
    text = ("Written by `bench/containers.py` (`make bench`): `lxc-checkpoint -s` then `lxc-checkpoint -r` "
            "of the busybox container of `make demo` (init, syslogd, a counter, a listener, a shell on the "
            "console); wall time of each command, median (min–max).\n\n")
    if rows:
        text += "| criu | lxc-checkpoint -s | lxc-checkpoint -r |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
    return text + note


def write_section(header: str, body: str) -> None:
    """Replace (or add) the section `header` of docs/BENCHMARKS.md; the other sections stay."""
    old = open(OUT).read() if os.path.exists(OUT) else "# Benchmarks\n\n"
    if header in old:
        start = old.index(header)
        end = old.find("\n## ", start + len(header))
        old = old[:start] + old[end + 1:] if end >= 0 else old[:start]
    with open(OUT, "w") as f:
        f.write(old.rstrip("\n") + "\n\n" + header + "\n\n" + body.rstrip("\n") + "\n")
    print(f"wrote the {header!r} section of {OUT}")


def write(text: str) -> None:
    write_section(HEADER, text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    missing = ct.lxc_missing()
    if missing:
        write(section([], f"Not measured: {missing}.\n"))
        return 0
    ct.ensure_bridge()
    from lxc_cr.engine import kernel
    kernel.set_child_subreaper(True)
    tools = {"lxc-cr (hooks/criu)": ct.CriuOnPath()}
    criu = criu_tool()
    if criu:
        tools[f"CRIU ({criu[0]})"] = ct.CriuOnPath(criu[0])
    c = ct.Container("bench", 18)
    rows = []
    try:
        c.create()
        c.start()
        blocked = blockers(c.name)
        if blocked:
            write(section([], "Not measured yet: the engine cannot checkpoint this container:\n"
                              + "".join(f"- {b}\n" for b in blocked)))
            return 0
        for name, path in tools.items():
            work = tempfile.mkdtemp(prefix=f"{ct.PREFIX}bench-", dir="/dev/shm")
            try:
                rounds = [one_round(c, path, work) for _ in range(opts.runs)]
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rows.append(f"| {name} | {summary([r['checkpoint'] for r in rounds])} | "
                        f"{summary([r['restore'] for r in rounds])} |")
            print(rows[-1], flush=True)
    finally:
        c.destroy()
        for path in tools.values():
            path.remove()
    write(section(rows, f"{opts.runs} rounds each; images on /dev/shm.\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
