"""The lxc-cr engine: checkpoint and restore of process trees, driven by plans.

Public API (everything else is internal):
    dump(plan)     -> DumpStats   checkpoint plan.pid into plan.images_dir
    restore(plan)  -> int         root PID (detached) or the root's exit status
Errors are subclasses of lxc_cr.engine.errors.CRError, each with a one-line message.
"""


def dump(plan):
    from .dump import dump as _dump
    return _dump(plan)


def restore(plan):
    from .restore import restore as _restore
    return _restore(plan)
