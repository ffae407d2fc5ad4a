"""Kind module 'inetsk': not written yet (see engine/files.py for the interface)."""
NAME = "inetsk"
MESSAGE = None


def matches(link, st) -> bool:
    return False
