"""Kind module 'mqueue': not written yet (see engine/files.py for the interface)."""
NAME = "mqueue"
MESSAGE = None


def matches(link, st) -> bool:
    return False
