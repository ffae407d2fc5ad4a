"""Kinds of open files: one module each, holding its schema, its dump and its restore.

The interface a kind module provides is described in engine/files.py.  This is the
registry: a kind module (and its schema) is imported the first time a file of its kind
is met, since most trees hold few kinds and start-up time counts.

Adding a kind: write the module and its .proto, add its name to NAMES, and list it in
BY_TYPE or BY_LINK for the files it may own.
"""
import importlib
import stat

# every kind, by its name in files.img (its module's name and NAME)
NAMES = frozenset({"external", "memfd", "mqueue", "regfile", "pipe", "unixsk", "inetsk", "tty", "chardev",
                   "eventfd", "epoll", "signalfd", "timerfd", "inotify", "fanotify", "pidfd"})

# The kinds that may own a file of each type.  They are asked in this order and the first whose
# matches() accepts the file owns it, so specific kinds come before general ones (a pty before
# character devices, memfd and message queues before regular files: a queue's inode looks like
# a regular file "/NAME").  "external" is not here: it claims only files the plan names.
BY_TYPE = {
    stat.S_IFREG: ("memfd", "mqueue", "regfile"),
    stat.S_IFDIR: ("regfile",),
    stat.S_IFIFO: ("pipe",),
    stat.S_IFSOCK: ("unixsk", "inetsk"),
    stat.S_IFCHR: ("tty", "chardev"),
}

# anonymous inodes have no file type: their /proc/PID/fd link names them
BY_LINK = {
    "anon_inode:[eventfd]": "eventfd",
    "anon_inode:[eventpoll]": "epoll",
    "anon_inode:[signalfd]": "signalfd",
    "anon_inode:[timerfd]": "timerfd",
    "anon_inode:inotify": "inotify",
    "anon_inode:[fanotify]": "fanotify",
    "anon_inode:[pidfd]": "pidfd",
}


def named(name: str):
    """The kind module called name in files.img, or None for a name that is no kind."""
    return importlib.import_module(f"{__name__}.{name}") if name in NAMES else None


def owner(link: str, st) -> object:
    """The kind module that owns this open file (link: its /proc/PID/fd link), or None."""
    if link in BY_LINK:
        names = (BY_LINK[link],)
    elif link.startswith("pidfd:"):             # a pidfs file (newer kernels)
        names = ("pidfd",)
    else:
        names = BY_TYPE.get(stat.S_IFMT(st.st_mode), ())
    for name in names:
        kind = named(name)
        if kind.matches(link, st):
            return kind
    return None


def all_kinds() -> list:
    """Every kind module (lxc-cr show needs every schema)."""
    return [named(name) for name in sorted(NAMES)]
