"""Programs nobody wrote for us: a Python interpreter (same executable as lxc-cr's own,
which the exe link must survive) and coreutils."""
from __future__ import annotations

from conftest import PROGS_DIR


def test_python_interpreter_with_a_thread(run_cycle):
    run_cycle("/usr/bin/python3", args=[str(PROGS_DIR / "python_job.py")])


def test_program_whose_binary_was_replaced(tmp_path):
    """An upgrade replaced the executable while it ran: its old code comes back from the
    dump, and the exe link still points at a deleted file."""
    import os
    import shutil
    import signal
    import subprocess
    import time

    from conftest import BIN_DIR, LXC_CR
    exe = tmp_path / "counter"
    shutil.copy(BIN_DIR / "counter", exe)
    log = tmp_path / "log"
    with open(log, "w") as out:
        p = subprocess.Popen([exe, "4", "0"], stdout=out, stderr=out, stdin=subprocess.DEVNULL, cwd=tmp_path,
                             start_new_session=True)
    try:
        while "READY" not in log.read_text():
            time.sleep(0.01)
        exe.unlink()
        shutil.copy("/bin/true", exe)                        # the "upgrade"
        images = tmp_path / "images"
        res = subprocess.run([LXC_CR, "dump", "-t", str(p.pid), "-D", images], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        p.wait()
        res = subprocess.run([LXC_CR, "restore", "-D", images, "-d"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert os.readlink(f"/proc/{p.pid}/exe").endswith(" (deleted)")
        os.kill(p.pid, signal.SIGUSR1)
        end = time.monotonic() + 20
        while "MiB intact" not in log.read_text():
            assert time.monotonic() < end, log.read_text()
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        os.waitpid(p.pid, 0)
    finally:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
