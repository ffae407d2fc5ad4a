"""Programs nobody wrote for us: a Python interpreter (same executable as lxc-cr's own,
which the exe link must survive) and coreutils."""
from __future__ import annotations

from conftest import PROGS_DIR


def test_python_interpreter_with_a_thread(run_cycle):
    run_cycle("/usr/bin/python3", args=[str(PROGS_DIR / "python_job.py")])
