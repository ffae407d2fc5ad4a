"""lxc-cr: checkpoint/restore of Linux process trees and containers.

The front door (CLI, plans) lives here; the engine is lxc_cr.engine.
"""
__version__ = "0.1.0"
# The CRIU version we answer as when a runtime asks `criu --version`: the
# runtimes gate features on it (see docs/ARCHITECTURE.md).
CRIU_COMPAT_VERSION = "3.17.1"
