"""Kinds of open files: one module each, holding its schema, its dump and its restore.

A kind module provides NAME, MESSAGE (its protobuf detail type), matches(link, stat),
dump(ctx, pid, fd, link, stat, entry) -> detail, and open(ctx, entry, detail) -> fd.
Adding a kind: write the module and its .proto, and add it to KINDS below.
"""
from . import chardev, regfile

KINDS = [regfile, chardev]
