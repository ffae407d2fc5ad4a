"""The image directory: naming, permissions, framing and integrity of image files.

A protobuf image is one message framed as
    b"LXCR" | u32 format version | u64 payload length | u32 crc32 | payload
so that a truncated or corrupted file is caught before any field is used.
Raw data files (pages, file contents) are written without framing; their
expected sizes are recorded in the protobuf images that describe them.
Directories are 0700 and files 0600: images hold memory contents.

Memory page files may be stored compressed (NAME.zst, written by zstd after the tree was
released): readers ask for NAME and get the decompressed content in a memfd, filled by the
zstd process itself, so page data never passes through Python.
"""
from __future__ import annotations

import logging
import os
import struct
import zlib

from .errors import ImageError, PlanError

FORMAT_VERSION = 1
MAGIC = b"LXCR"
HEADER = struct.Struct("<4sIQI")
INVENTORY = "inventory.img"
MAX_IMAGE = 1 << 30          # no protobuf image is ever this large
ZSTD = ".zst"


def _pb():
    # protobuf is loaded only by the commands that read or write images
    from .proto import images_pb2
    return images_pb2


class ImageDir:
    """An open image directory; remembers what it created so a failed dump can remove it."""

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd
        self.created: list[str] = []
        self.unpacked: dict[str, int] = {}      # NAME -> memfd with NAME.zst's content

    @classmethod
    def for_dump(cls, path: str) -> "ImageDir":
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as e:
            raise PlanError(f"cannot create image directory {path}: {e.strerror}") from None
        fd = _open_dir(path)
        if _exists(fd, INVENTORY):
            os.close(fd)
            raise PlanError(f"{path} already holds a dump ({INVENTORY} exists); use a fresh directory")
        os.fchmod(fd, 0o700)
        return cls(path, fd)

    @classmethod
    def for_restore(cls, path: str) -> "ImageDir":
        if not os.path.isdir(path):
            raise PlanError(f"image directory {path} does not exist")
        fd = _open_dir(path)
        if not _exists(fd, INVENTORY):
            os.close(fd)
            raise ImageError(f"{path}: no {INVENTORY}: not a complete dump")
        return cls(path, fd)

    def close(self) -> None:
        for fd in self.unpacked.values():
            os.close(fd)
        self.unpacked.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # --- raw files -----------------------------------------------------------

    def create(self, name: str) -> int:
        """A new raw file for writing (O_EXCL: a dump never overwrites)."""
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=self.fd)
        except FileExistsError:
            raise PlanError(f"{self.path}/{name} already exists; use a fresh directory") from None
        self.created.append(name)
        return fd

    def open(self, name: str) -> int:
        try:
            return os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            if _exists(self.fd, name + ZSTD):
                return os.dup(self._unpack(name))
            raise ImageError(f"{self.path}/{name}: image file missing") from None

    def size(self, name: str) -> int:
        try:
            return os.stat(name, dir_fd=self.fd).st_size
        except FileNotFoundError:
            if _exists(self.fd, name + ZSTD):
                return os.fstat(self._unpack(name)).st_size
            raise ImageError(f"{self.path}/{name}: image file missing") from None

    def compress(self, names: list[str]) -> None:
        """Replace each raw file NAME by NAME.zst.  A file zstd fails on stays as it was
        (readers take either form): the dump is complete either way, so that is a warning."""
        import subprocess       # only for compressed images (~3 ms to import)
        for name in names:
            try:
                done = subprocess.run(["zstd", "-q", "--rm", "-T0", name], cwd=self.path,
                                      stdin=subprocess.DEVNULL, capture_output=True, text=True)
                problem = done.stderr.strip() if done.returncode else None
            except OSError as e:
                problem = e.strerror
            if problem:
                logging.getLogger("lxc_cr").warning("%s/%s left uncompressed: zstd: %s", self.path, name, problem)

    def _unpack(self, name: str) -> int:
        if name not in self.unpacked:
            import subprocess
            src = os.open(name + ZSTD, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fd)
            out = os.memfd_create(name, os.MFD_CLOEXEC)
            try:
                done = subprocess.run(["zstd", "-d", "-q", "-c"], stdin=src, stdout=out,
                                      stderr=subprocess.PIPE, text=True)
            finally:
                os.close(src)
            if done.returncode != 0:
                os.close(out)
                raise ImageError(f"{self.path}/{name}{ZSTD}: cannot decompress: {done.stderr.strip()}")
            self.unpacked[name] = out
        return self.unpacked[name]

    def remove_created(self) -> None:
        for name in reversed(self.created):
            try:
                os.unlink(name, dir_fd=self.fd)
            except OSError:
                pass
        self.created.clear()

    # --- protobuf images -------------------------------------------------------

    def write(self, name: str, message) -> None:
        payload = message.SerializeToString()
        fd = self.create(name)
        try:
            data = HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), zlib.crc32(payload)) + payload
            os.write(fd, data)
        finally:
            os.close(fd)

    def read(self, name: str, message_type):
        fd = self.open(name)
        try:
            data = _read_all(fd)
        finally:
            os.close(fd)
        where = f"{self.path}/{name}"
        if len(data) < HEADER.size:
            raise ImageError(f"{where}: truncated (no header)")
        magic, version, length, crc = HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ImageError(f"{where}: not an lxc-cr image (bad magic)")
        if version != FORMAT_VERSION:
            raise ImageError(f"{where}: format version {version}, this lxc-cr reads {FORMAT_VERSION}")
        payload = data[HEADER.size:]
        if length > MAX_IMAGE or len(payload) != length:
            raise ImageError(f"{where}: truncated ({len(payload)} of {length} bytes)")
        if zlib.crc32(payload) != crc:
            raise ImageError(f"{where}: corrupted (checksum mismatch)")
        msg = message_type()
        try:
            msg.ParseFromString(payload)
        except Exception as e:  # protobuf raises its own DecodeError
            raise ImageError(f"{where}: cannot decode: {e}") from None
        return msg


def prune(pattern: str, keep: int) -> None:
    """Retention: of the complete dumps whose directories match pattern (a glob made from a
    policy's images_dir template, the time left open), keep the newest `keep`."""
    import glob
    import shutil
    dumps = sorted(d for d in glob.glob(pattern) if os.path.isfile(os.path.join(d, INVENTORY)))
    for old in dumps[:-keep]:
        logging.getLogger("lxc_cr").info("retention: removing %s", old)
        shutil.rmtree(old, ignore_errors=True)


def _open_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise PlanError(f"cannot open image directory {path}: {e.strerror}") from None


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# Which message each image file holds, for `lxc-cr show`.
def message_for(name: str):
    pb = _pb()
    table = {
        "inventory.img": pb.Inventory,
        "pstree.img": pb.Pstree,
        "files.img": pb.Files,
        "shmem.img": pb.SharedMemory,
    }
    if name == "cgroups.img":
        from .proto.cgroups_pb2 import Cgroups
        return Cgroups
    if name == "sysvipc.img":
        from .proto.sysvipc_pb2 import SysvIpc
        return SysvIpc
    if name == "mnt.img":
        from .proto import mounts_pb2
        return mounts_pb2.MountTree
    if name in table:
        return table[name]
    if name.startswith("task-") and name.endswith(".img"):
        return pb.Task
    if name.startswith("mm-") and name.endswith(".img"):
        return pb.Mm
    return None
