"""Every error the engine raises: one type per kind of failure, one readable line each.

The CLI prints str(error) and exits non-zero; nothing else is shown on the
terminal.  Messages say what failed and where (PID, fd, image file, step).
"""


class CRError(Exception):
    """Base of all lxc-cr errors."""


class PlanError(CRError):
    """The request itself is wrong: bad option, bad PID, bad directory."""


class UnsupportedError(CRError):
    """The tree holds something the engine cannot checkpoint faithfully."""


class KernelError(CRError):
    """A system call failed where it should not have."""


class ImageError(CRError):
    """An image file is missing, truncated, corrupted or inconsistent."""


class DumpError(CRError):
    """The dump could not be completed; the tree was left running."""


class RestoreError(CRError):
    """The restore could not be completed; everything created was removed."""


class NotifyRefused(CRError):
    """The caller said no at a notification (engine/notify.py), or went away."""


class InjectedFault(CRError):
    """A fault injected with LXC_CR_FAULT, for testing failure paths."""


def fault_point(step: str) -> None:
    """Test hooks for failure paths: LXC_CR_FAULT=step fails here, LXC_CR_PAUSE=step
    stops here for a minute (so that a test can kill lxc-cr at this point)."""
    import os
    if os.environ.get("LXC_CR_FAULT") == step:
        raise InjectedFault(f"injected fault at step {step!r}")
    if os.environ.get("LXC_CR_PAUSE") == step:
        import time
        time.sleep(60)


class ActionError(CRError):
    """A command the plan asked to run around a dump or restore failed."""
