"""The lxc-cr engine: checkpoint and restore of process trees, driven by plans.

Public API (everything else is internal):
    warm_up(tree, network)        start loading what a dump of tree or a restore will need
    dump(plan)     -> DumpStats   checkpoint plan.pid into plan.images_dir
    restore(plan)  -> int         root PID (detached) or the root's exit status
Errors are subclasses of lxc_cr.engine.errors.CRError, each with a one-line message.
"""

# what restore may do with cgroups (CRIU's --manage-cgroups modes; engine/cgroups.py)
CGROUP_MODES = ("ignore", "none", "props", "soft", "full", "strict")


def warm_up(tree: int | None = None, network: bool = False) -> None:
    """Start what a coming dump (of tree) or restore (of a network namespace) will need, so
    that it loads while the caller builds its plan: the netlink worker (engine/nlworker.py)."""
    if network or (tree and _own_netns(tree)):
        from . import nlworker
        nlworker.start()


def dump(plan):
    from . import nlworker
    warm_up(tree=plan.pid)      # first, if the caller did not: it loads while we import and freeze
    try:
        from .dumping import dump as _dump
        return _dump(plan)
    finally:
        nlworker.stop()


def restore(plan):
    from . import nlworker
    warm_up(network=bool(plan.net_devices))     # engine/restoring.py starts it too if the images say so
    try:
        from .restoring import restore as _restore
        return _restore(plan)
    finally:
        nlworker.stop()


def _own_netns(pid: int) -> bool:
    import os
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False            # no such process: the dump says so
