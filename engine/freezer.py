"""Freezing a cgroup before the tree is seized (--freeze-cgroup), as runtimes ask.

cgroup2: write 1 to cgroup.freeze and wait until cgroup.events says
"frozen 1" (poll()ed: the kernel notifies the change).  cgroup v1: write
FROZEN to freezer.state and wait for it.  A frozen task may take its ptrace
trap only once thawed, so the seizer interrupts every task while the cgroup
is frozen and thaws it right after.  The cgroup is left as we found it.
"""
from __future__ import annotations

import logging
import os
import select
import time

from .errors import DumpError, PlanError

log = logging.getLogger("lxc_cr.freezer")
TIMEOUT = 10.0


class Freezer:
    def __init__(self, path: str):
        self.path = path
        if os.path.exists(os.path.join(path, "cgroup.freeze")):
            self.v1 = False
        elif os.path.exists(os.path.join(path, "freezer.state")):
            self.v1 = True
        else:
            raise PlanError(f"--freeze-cgroup {path}: not a cgroup2 directory or a v1 freezer cgroup")
        self.was_frozen = self._frozen()
        self.frozen = False

    def _read(self, name: str) -> str:
        with open(os.path.join(self.path, name)) as f:
            return f.read()

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def _frozen(self) -> bool:
        if self.v1:
            return self._read("freezer.state").strip() == "FROZEN"
        return "frozen 1" in self._read("cgroup.events")

    def freeze(self) -> None:
        if self._frozen():
            self.frozen = True
            return
        t0 = time.monotonic()
        if self.v1:
            self._write("freezer.state", "FROZEN")
        else:
            self._write("cgroup.freeze", "1")
        self.frozen = True
        self._wait(True)
        log.info("froze %s in %.1f ms", self.path, (time.monotonic() - t0) * 1000)

    def thaw(self) -> None:
        if self.v1:
            self._write("freezer.state", "THAWED")
        else:
            self._write("cgroup.freeze", "0")
        self.frozen = False

    def restore_state(self) -> None:
        """Leave the cgroup as we found it: thawed, or frozen if it was."""
        if self.was_frozen and not self.frozen:
            self.freeze()
        elif not self.was_frozen and self.frozen:
            self.thaw()

    def _wait(self, frozen: bool) -> None:
        deadline = time.monotonic() + TIMEOUT
        if self.v1:
            # v1 has no notification: re-read, yielding the CPU between reads
            while self._frozen() != frozen:
                if time.monotonic() > deadline:
                    raise DumpError(f"cgroup {self.path} did not freeze in {TIMEOUT:.0f} s")
                time.sleep(0.0005)
            return
        with open(os.path.join(self.path, "cgroup.events")) as events:
            poller = select.poll()
            poller.register(events, select.POLLPRI)
            while True:
                events.seek(0)
                if ("frozen 1" in events.read()) == frozen:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DumpError(f"cgroup {self.path} did not freeze in {TIMEOUT:.0f} s")
                poller.poll(left * 1000)
