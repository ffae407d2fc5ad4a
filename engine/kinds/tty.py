"""Kind module 'tty': not written yet (see engine/files.py for the interface)."""
NAME = "tty"
MESSAGE = None


def matches(link, st) -> bool:
    return False
