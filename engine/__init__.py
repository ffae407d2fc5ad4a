"""The lxc-cr engine: checkpoint and restore of process trees, driven by plans.

Public API (everything else is internal):
    dump(plan)     -> DumpStats   checkpoint plan.pid into plan.images_dir
    restore(plan)  -> int         root PID (detached) or the root's exit status
Errors are subclasses of lxc_cr.engine.errors.CRError, each with a one-line message.
"""

# what restore may do with cgroups (CRIU's --manage-cgroups modes; engine/cgroups.py)
CGROUP_MODES = ("ignore", "none", "props", "soft", "full", "strict")


def dump(plan):
    from .dumping import dump as _dump
    return _dump(plan)


def restore(plan):
    from .restoring import restore as _restore
    return _restore(plan)
