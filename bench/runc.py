"""Benchmark: `runc checkpoint` and `runc restore` of a `runc spec` busybox bundle.

One container (the counting bundle of tests/integration/test_runc.py) is checkpointed
and restored RUNS times with `runc --criu hooks/criu`, timing both commands; a round whose
restored container does not count on from where it stopped aborts the benchmark.  With a
`criu` of version 4.1 or newer on PATH, the same rounds run with it.  The results replace
the "runc" section of docs/BENCHMARKS.md.  Nothing is asserted.

    .venv/bin/python bench/runc.py [--runs 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "bench"), os.path.join(ROOT, "tests", "integration")]

from containers import write_section          # noqa: E402
from run import criu_tool, summary             # noqa: E402
import test_runc                               # noqa: E402

HEADER = "## runc"


def one_round(c) -> dict[str, float]:
    _, before = c.next_line()
    c.checkpoint()
    checkpoint = c.seconds          # the runc command alone, not the harness's `runc state` before it
    _, last = c.last_lines_until_eof()
    c.restore()
    restore = c.seconds
    _, first = c.next_line()
    if first != last + 1 or last < before:
        raise SystemExit(f"the restored container counted {first} after {last}")
    shutil.rmtree(c.images)
    shutil.rmtree(c.work, ignore_errors=True)
    return {"checkpoint": checkpoint, "restore": restore}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    if shutil.which("runc") is None:
        write_section(HEADER, "Not measured: runc is not installed (`make setup` installs it).\n")
        return 0
    # the checkpointed init is reparented to us and reaped (this host's PID 1 reaps nothing)
    from lxc_cr.engine import kernel
    kernel.set_child_subreaper(True)
    tools = {"lxc-cr (hooks/criu)": test_runc.CRIU}
    criu = criu_tool()
    if criu:
        tools[f"CRIU ({criu[0]})"] = Path(criu[0])
    rows = []
    for name, binary in tools.items():
        test_runc.CRIU = binary
        with tempfile.TemporaryDirectory(prefix="lxccr-bench-runc-", dir="/dev/shm") as tmp:
            c = test_runc.Container(Path(tmp), "bench")
            try:
                c.start()
                rounds = [one_round(c) for _ in range(opts.runs)]
            finally:
                c.destroy()
        rows.append(f"| {name} | {summary([r['checkpoint'] for r in rounds])} | "
                    f"{summary([r['restore'] for r in rounds])} |")
        print(rows[-1], flush=True)
    write_section(HEADER, "Written by `bench/runc.py` (`make bench`): `runc checkpoint` then `runc restore -d` of "
                          "a `runc spec` busybox bundle whose shell counts; wall time of each command, median "
                          "(min–max).\n\n| criu | runc checkpoint | runc restore |\n|---|---|---|\n"
                  + "\n".join(rows) + f"\n\n{opts.runs} rounds each; images on /dev/shm.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
