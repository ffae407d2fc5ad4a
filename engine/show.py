"""`lxc-cr show`: every image of a directory decoded as JSON; raw data files by size."""
from __future__ import annotations

import json
import os

from .errors import PlanError
from .images import ImageDir, message_for


def show(directory: str, names: list[str]) -> str:
    from google.protobuf import json_format
    from . import kinds
    kinds.all_kinds()       # imports every kind's schema: the file entries' details need them
    if not os.path.isdir(directory):
        raise PlanError(f"image directory {directory} does not exist")
    images = ImageDir(directory, os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        out = {}
        for name in names or sorted(os.listdir(directory)):
            message_type = message_for(name)
            if message_type is None:
                if not name.endswith(".img"):
                    continue
                out[name] = {"raw_bytes": images.size(name)}
                continue
            msg = images.read(name, message_type)
            out[name] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
        return json.dumps(out, indent=2) + "\n"
    finally:
        images.close()
