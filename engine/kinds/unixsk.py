"""Kind module 'unixsk': not written yet (see engine/files.py for the interface)."""
NAME = "unixsk"
MESSAGE = None


def matches(link, st) -> bool:
    return False
