"""Kinds of open files: one module each, holding its schema, its dump and its restore.

The interface a kind module provides is described in engine/files.py.
Adding a kind: write the module and its .proto, and add it to KINDS below.
The first kind whose matches() accepts a file owns it, so specific kinds come
before general ones (a pty before character devices, memfd and message queues
before regular files: a queue's inode looks like a regular file "/NAME").
"""
from . import (chardev, epoll, eventfd, fanotify, external, inetsk, inotify, memfd, mqueue, pidfd, pipe,
               regfile, signalfd, timerfd, tty, unixsk)

KINDS = [
    external,           # claims no file by type: only files the plan names (--external)
    memfd, mqueue, regfile,
    pipe,
    unixsk, inetsk,
    tty, chardev,
    eventfd, epoll, signalfd, timerfd, inotify, fanotify, pidfd,
]
