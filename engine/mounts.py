"""The tree's own mount namespace: its mount tree, dumped from mountinfo and rebuilt under a root.

Dump (`dump`, `check`): /proc/ROOT/mountinfo, as the root task sees it, becomes
mnt.img: per mount its id, parent, mountpoint, root in its file system, type,
source, superblock options, per-mount flags and propagation.  Each mount is
one of four kinds (mounts.proto):
  ROOT      the root mount: at restore `--root DIR`, or without it the host path
            its tree lay at when dumped (the plain `unshare -m` case: the host's /);
  NEW       a file system of its own: tmpfs (with its files, in tmpfs-ID.img as a
            tar archive), devpts (a new instance), proc, sysfs, mqueue, cgroup, cgroup2;
  BIND      another view of an earlier mount's file system (same superblock);
  EXTERNAL  the caller's, named by a key: `--ext-mount-map MNT:KEY` on dump and
            `KEY:HOSTPATH` on restore.  Mounts that are copies of the dumper's own
            (same file system, root and mountpoint: what `unshare -m` inherits) are
            external by default, keyed by their host path; with `--ext-mount-map auto`
            (`--external mnt[]`) so is any bind of a file system the dumper has mounted.
Anything else is refused naming its mountpoint and type (also by `dump --check-only`).

Restore (`prepare`, then `MountNs.enter` in the root task): a builder child
unshares a mount namespace, makes every mount in it a slave (nothing it does
reaches the host), clones the root and every external source, then builds the
tree under the root: new file systems, tmpfs contents, binds, flags and
propagation; then pivot_root into it and detaches the old root.  File systems
tied to the tree's other namespaces (proc to its PID namespace, sysfs to its
network one, mqueue to its IPC one, cgroups to its cgroup one), and everything
mounted on or bound from them, are made by the root task itself once it has
joined that namespace (`MountNs.enter`), before it forks anything.  While the
tree is built, the orchestrator opens the tasks' files as they see them
(`MountNs.path`: resolved under the restored root with RESOLVE_IN_ROOT).  The
namespace lives only in the builder, the orchestrator's fds and the tree: a
failed restore leaves no mount anywhere.
"""
from __future__ import annotations

import contextlib
import logging
import os
import stat
from typing import NamedTuple

from . import kernel as k
from . import namespaces
from .errors import ImageError, PlanError, RestoreError, UnsupportedError, fault_point

log = logging.getLogger("lxc_cr.mounts")

IMAGE = "mnt.img"
NS_BOUND = ("proc", "sysfs", "mqueue", "cgroup", "cgroup2")     # made in the root task, in its namespaces
NEW_FS = NS_BOUND + ("tmpfs", "devpts")
TMPFS_LIMIT = 256 << 20          # largest tmpfs content saved
FLAGS = {"ro": k.MS_RDONLY, "nosuid": k.MS_NOSUID, "nodev": k.MS_NODEV, "noexec": k.MS_NOEXEC,
         "noatime": k.MS_NOATIME, "nodiratime": k.MS_NODIRATIME, "relatime": k.MS_RELATIME}
ATIME = k.MS_NOATIME | k.MS_RELATIME | k.MS_STRICTATIME


def _pb():
    from .proto import mounts_pb2
    return mounts_pb2


# --- mountinfo ------------------------------------------------------------------------------

class Info(NamedTuple):
    """One line of mountinfo."""
    id: int
    parent: int
    dev: str
    root: str
    mountpoint: str
    options: list
    tags: list
    fstype: str
    source: str
    super_options: list

    def tag(self, name: str) -> int:
        for t in self.tags:
            if t.startswith(name + ":"):
                return int(t.split(":", 1)[1])
        return 0


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def mountinfo(pid: int | str) -> list[Info]:
    with open(f"/proc/{pid}/mountinfo") as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        left, right = line.split(" - ", 1)
        a, b = left.split(), right.split()
        out.append(Info(int(a[0]), int(a[1]), a[2], _unescape(a[3]), _unescape(a[4]), a[5].split(","),
                        a[6:], b[0], _unescape(b[1]), b[2].split(",") if len(b) > 2 else []))
    return out


def _under(path: str, top: str) -> str | None:
    """path relative to top ('' for top itself), or None if it is not inside it."""
    if top == "/":
        return path.lstrip("/")
    if path == top:
        return ""
    return path[len(top) + 1:] if path.startswith(top + "/") else None


def _join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel if rel else base


# --- dump -----------------------------------------------------------------------------------

def own(root: int) -> bool:
    return os.stat(f"/proc/{root}/ns/mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino


def in_tree(ctx, mnt_id: int) -> bool:
    """For the kinds' dump: is mount mnt_id (fdinfo) one of the tree's?  Always, without a
    mount namespace of its own; else one of its mountinfo (a file a runtime opened outside, such
    as a stdio file, is not)."""
    if "mounts" not in ctx.shared:
        root = ctx.plan.pid
        ctx.shared["mounts"] = {m.id for m in mountinfo(root)} if own(root) else None
    ids = ctx.shared["mounts"]
    return ids is None or mnt_id in ids


class _Classifier:
    """Decides the kind of every mount of the tree (the dump's and --check-only's rules)."""

    def __init__(self, plan, infos: list[Info], host: list[Info]):
        self.plan = plan
        self.host = host
        self.host_shared = {h.tag("shared") for h in host} - {0}
        self.ext = dict(plan.ext_mounts)
        self.reasons: list[str] = []
        ids = {m.id for m in infos}
        roots = [m for m in infos if m.mountpoint == "/" and m.parent not in ids]
        if len(roots) != 1:
            self.reasons.append("cannot find the root mount of the tree's mount namespace")
            self.order = []
            return
        children: dict[int, list] = {}
        for m in infos:
            children.setdefault(m.parent, []).append(m)
        self.order = []
        stack = [roots[0]]
        while stack:                      # parents before children, siblings in mountinfo order
            m = stack.pop()
            self.order.append(m)
            stack.extend(reversed(children.get(m.id, [])))

    def host_path(self, m: Info) -> str | None:
        """Where the dumper sees m's tree: the deepest of its mounts of the same file system."""
        best = None
        for h in self.host:
            rel = _under(m.root, h.root) if h.dev == m.dev else None
            if rel is not None and (best is None or len(h.root) > len(best[0].root)):
                best = (h, rel)
        return _join(best[0].mountpoint, best[1]) if best else None

    def classify(self):
        pb = _pb()
        tree = pb.MountTree()
        made: dict[str, list] = {}          # dev -> earlier mounts of that file system
        groups = {m.tag("shared") for m in self.order} - {0}
        for i, m in enumerate(self.order):
            e = tree.mounts.add(id=m.id, parent=m.parent, mountpoint=m.mountpoint, root=m.root,
                                fstype=m.fstype, source=m.source, sb_readonly="ro" in m.super_options,
                                options=",".join(o for o in m.super_options if o not in ("rw", "ro")),
                                flags=sum(FLAGS.get(o, 0) for o in m.options),
                                shared=m.tag("shared"), master=m.tag("master"),
                                unbindable="unbindable" in m.tags)
            where = f"mount at {m.mountpoint} ({m.fstype} {m.source})"
            if i == 0:
                e.kind = pb.Mount.ROOT
                tree.root_source = self.host_path(m) or ""
            else:
                earlier = [x for x in made.get(m.dev, []) if _under(m.root, x.root) is not None]
                problem = self._kind(m, e, earlier)
                if problem:
                    self.reasons.append(f"{where}: {problem}")
            self._check_propagation(e, where, groups)
            made.setdefault(m.dev, []).append(m)
        return tree

    def _kind(self, m: Info, e, earlier: list) -> str | None:
        """Set e's kind; or say why the mount cannot be rebuilt."""
        pb = _pb()
        host_path = self.host_path(m)
        if m.mountpoint in self.ext:
            e.kind, e.ext_key = pb.Mount.EXTERNAL, self.ext[m.mountpoint]
        elif earlier:
            e.kind, e.bind_of = pb.Mount.BIND, earlier[0].id
        elif host_path is not None and (host_path == m.mountpoint or self.plan.ext_mount_auto):
            e.kind, e.ext_key, e.ext_auto = pb.Mount.EXTERNAL, host_path, True
        elif host_path is not None:
            return (f"a bind of {host_path}, outside the tree; name it external with "
                    f"--ext-mount-map {m.mountpoint}:KEY (or auto)")
        elif m.fstype not in NEW_FS:
            return (f"file system type {m.fstype} cannot be rebuilt; name it external with "
                    f"--ext-mount-map {m.mountpoint}:KEY (or auto)")
        elif m.root != "/":
            return f"shows {m.root} of a {m.fstype} that is not mounted whole anywhere; not supported"
        else:
            e.kind = pb.Mount.NEW
        return None

    def _check_propagation(self, e, where: str, groups: set) -> None:
        if e.shared and e.shared in self.host_shared:
            e.ext_peer = True
            if not self.plan.ext_sharing:
                self.reasons.append(f"{where}: shared with mounts outside the tree (peer group {e.shared}); "
                                    f"allow with --enable-external-sharing")
        if e.master and e.master not in groups and not self.plan.ext_masters:
            self.reasons.append(f"{where}: slave of mounts outside the tree (master {e.master}); allow "
                                f"with --enable-external-masters")


def check(plan) -> list[str]:
    """For dump --check-only: why the tree's mounts could not be dumped."""
    if not own(plan.pid):
        return []
    c = _Classifier(plan, mountinfo(plan.pid), mountinfo("self"))
    c.classify()
    return c.reasons


def dump(plan, images) -> bool:
    """Write mnt.img (and tmpfs contents) when the tree has a mount namespace of its own."""
    if not own(plan.pid):
        return False
    c = _Classifier(plan, mountinfo(plan.pid), mountinfo("self"))
    tree = c.classify()
    if c.reasons:
        raise UnsupportedError(f"process {plan.pid}: {c.reasons[0]}")
    pb = _pb()
    for e in tree.mounts:
        if e.kind == pb.Mount.NEW and e.fstype == "tmpfs":
            e.content = f"tmpfs-{e.id}.img"
            _save_tmpfs(plan.pid, e, images)
    images.write(IMAGE, tree)
    return True


def _save_tmpfs(root: int, e, images) -> None:
    """The files of one tmpfs mount, not what is mounted over them: a detached clone of the
    mount, made while the dumper visits the tree's namespace (only there may it be cloned),
    as a tar."""
    import tarfile          # ~3 ms, only with a tmpfs to save; before our paths are out of sight
    out = images.create(e.content)
    rootfd = os.open(f"/proc/{root}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with namespaces.visiting(root, "mnt"):       # it puts our root and cwd back
            problem = _archive(rootfd, e.mountpoint, out, e.unbindable)
    finally:
        os.close(rootfd)
        os.close(out)
    if problem:
        raise UnsupportedError(f"process {root}: cannot save the tmpfs at {e.mountpoint}: {problem}")


def _archive(rootfd: int, mountpoint: str, out: int, unbindable: bool) -> str | None:
    """In the tree's mount namespace: the tmpfs at mountpoint into out; or what went wrong.
    Changes our working directory (and, for an unbindable mount, our mount namespace)."""
    import tarfile          # already loaded by _save_tmpfs: no path of ours is seen from here
    try:
        if unbindable:
            # an unbindable mount cannot be cloned: in a copy of the tree's namespace of our
            # own (dropped when we leave it), it is made private first; the tree's stays as it
            # is.  The copy takes our cwd with it: the root task's root, where mountpoint starts
            os.fchdir(rootfd)
            k.syscall("unshare", k.CLONE_NEWNS)
            k.mount(None, mountpoint.lstrip("/") or ".", None, k.MS_PRIVATE)
        base = k.AT_FDCWD if unbindable else rootfd     # cwd: the root task's root in our copy
        tree = k.open_tree(base, mountpoint.lstrip("/") or ".", k.OPEN_TREE_CLONE | os.O_CLOEXEC)
        try:
            st = os.fstatvfs(tree)
            if (st.f_blocks - st.f_bfree) * st.f_frsize > TMPFS_LIMIT:
                return f"it holds more than {TMPFS_LIMIT >> 20} MiB"
            os.fchdir(tree)
            with os.fdopen(os.dup(out), "wb") as f, \
                    tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                tar.add(".", recursive=True)
        finally:
            os.close(tree)
        return None
    except (OSError, tarfile.TarError) as ex:
        return str(ex)


# --- restore --------------------------------------------------------------------------------

def load(images, where: str):
    """mnt.img, validated: ids, parents before children, kinds' references, paths."""
    pb = _pb()
    tree = images.read(IMAGE, pb.MountTree)
    seen = {}
    for i, e in enumerate(tree.mounts):
        bad = None
        if not e.mountpoint.startswith("/") or "\0" in e.mountpoint or "/../" in e.mountpoint + "/":
            bad = "bad mountpoint"
        elif e.id in seen or (i and e.parent not in seen):
            bad = "duplicate id, or parent after child"
        elif (i == 0) != (e.kind == pb.Mount.ROOT):
            bad = "the root mount must come first, alone"
        elif e.kind == pb.Mount.BIND and (e.bind_of not in seen or _under(e.root, seen[e.bind_of].root) is None):
            bad = "bind of an unknown mount"
        elif e.kind == pb.Mount.NEW and (e.fstype not in NEW_FS or e.root != "/"):
            bad = f"file system type {e.fstype!r} is not one we make"
        elif e.kind == pb.Mount.EXTERNAL and not e.ext_key:
            bad = "external mount without a key"
        elif e.content and (e.fstype != "tmpfs" or not e.content.startswith("tmpfs-") or "/" in e.content):
            bad = "bad content image"
        elif any(c in e.options for c in "\0\n"):
            bad = "bad options"
        if bad:
            raise ImageError(f"{where}: mount {e.id} at {e.mountpoint!r}: {bad}")
        seen[e.id] = e
    if not tree.mounts:
        raise ImageError(f"{where}: no mounts")
    return tree


def _sources(tree, plan, where: str) -> dict[int, str]:
    """Mount id -> host path, for the root and every external mount; a key the plan does not
    map is refused here, before anything is made."""
    pb = _pb()
    mapping = dict(plan.ext_mounts)
    out = {}
    for e in tree.mounts:
        if e.kind == pb.Mount.ROOT:
            path = plan.root or tree.root_source
            if not path:
                raise PlanError(f"{where}: the root mount's source is unknown; give --root DIR")
            what = "--root" if plan.root else "the dumped root mount's path"
        elif e.kind == pb.Mount.EXTERNAL:
            path = mapping.get(e.ext_key)
            if path is None and e.ext_auto:
                path = e.ext_key
            if path is None:
                raise PlanError(f"external mount at {e.mountpoint}: no --ext-mount-map {e.ext_key}:PATH given")
            if path == "" and e.ext_key == "console":
                continue                    # LXC allocated no console: /dev/console stays as it is
            what = f"external mount {e.ext_key} (at {e.mountpoint})"
        else:
            continue
        if not os.path.isabs(path) or not os.path.exists(path):
            raise PlanError(f"{what}: {path!r} does not exist")
        out[e.id] = path
    return out


def prepare(images, inventory, plan):
    """Start building the tree's mount namespace (all but what the root task makes in `enter`)
    in a builder child; returns the Building, whose result() is the MountNs the rest of the
    restore uses, or None without one.  The images are checked before the child starts."""
    if not inventory.mnt_ns:
        if plan.root:
            log.info("--root %s: the dump has no mount namespace of its own; ignored", plan.root)
        return None
    where = f"{images.path}/{IMAGE}"
    tree = load(images, where)
    if any(e.content for e in tree.mounts):
        import tarfile      # noqa: F401 -- for _fill_tmpfs, in namespaces that do not see our paths
    sources = _sources(tree, plan, where)
    late = _late(tree)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r1)
        os.close(w2)
        _builder_main(tree, sources, late, images, w1, r2)
    os.close(w1)
    os.close(r2)
    return Building(tree, late, child, r1, w2)


class Building:
    """The builder child at work, while the orchestrator goes on (with the network)."""

    def __init__(self, tree, late: set, child: int, said: int, release: int):
        self.tree, self.late, self.child = tree, late, child
        self.said = said            # the builder's report: "ok ID:FD..." or what went wrong
        self.release = release      # closed: the builder exits (our fds then hold the namespace)

    def result(self) -> "MountNs":
        """Wait for the builder; the namespace it made, or RestoreError."""
        held = []
        try:
            with os.fdopen(self.said, "rb", closefd=True) as f:
                self.said = None
                said = f.read(4096).decode(errors="replace")
            if not said.startswith("ok"):
                raise RestoreError(f"mount namespace: {said or 'the builder died'}")
            for path, flags in ((f"/proc/{self.child}/ns/mnt", os.O_RDONLY),
                                (f"/proc/{self.child}/root", os.O_PATH | os.O_DIRECTORY)):
                held.append(os.open(path, flags | os.O_CLOEXEC))
            pidfd = k.pidfd_open(self.child)
            held.append(pidfd)
            clones = {int(i): k.pidfd_getfd(pidfd, int(fd)) for i, fd in
                      (item.split(":") for item in said.split()[1:])}
        except BaseException:
            for fd in held:
                os.close(fd)
            raise
        finally:
            self.close()
        for fd in held[2:]:
            os.close(fd)
        log.info("mount namespace: %d mounts, %d made by the root task", len(self.tree.mounts), len(self.late))
        return MountNs(self.tree, self.late, held[0], held[1], clones)

    def close(self) -> None:
        """Let the builder go (its namespace dies with it unless result() took it) and reap it."""
        if self.child is None:
            return
        for fd in (self.said, self.release):
            if fd is not None:
                os.close(fd)
        os.waitpid(self.child, 0)
        self.child = None


def _late(tree) -> set[int]:
    """Mounts the root task makes: namespace-bound file systems, and all on or from them; and
    binds of one pty of the tree's devpts (runc's /dev/console), which exists only once the
    orchestrator has opened the tasks' files."""
    pb = _pb()
    late: set[int] = set()
    for e in tree.mounts:
        if ((e.kind == pb.Mount.NEW and e.fstype in NS_BOUND) or e.parent in late
                or (e.kind == pb.Mount.BIND and (e.bind_of in late or e.fstype == "devpts" and e.root != "/"))):
            late.add(e.id)
    return late


class MountNs:
    """The restored mount namespace while the tree is being restored."""

    def __init__(self, tree, late: set, ns_fd: int, root_fd: int, clones: dict):
        self.tree, self.late, self.ns_fd, self.root_fd, self.clones = tree, late, ns_fd, root_fd, clones
        self.dirs: dict[str, int] = {}

    def path(self, p: str) -> str:
        """The tasks' path p, as the orchestrator can open, make or bind it: its directory
        resolved in the restored tree (RESOLVE_IN_ROOT), its last component left to the caller."""
        d, name = os.path.split(p)
        if d not in self.dirs:
            try:
                self.dirs[d] = k.openat2(self.root_fd, d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                                         k.RESOLVE_IN_ROOT)
            except OSError:
                return f"/proc/self/fd/{self.root_fd}/{p.lstrip('/')}"    # fails there as the tasks' would
        return f"/proc/self/fd/{self.dirs[d]}/{name}" if name else f"/proc/self/fd/{self.dirs[d]}"

    @contextlib.contextmanager
    def rooted(self):
        """This process chrooted into the restored root for a moment (and back: root may)."""
        old_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        old_cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fchdir(self.root_fd)
            os.chroot(".")
            yield
        finally:
            os.fchdir(old_root)
            os.chroot(".")
            os.fchdir(old_cwd)
            os.close(old_root)
            os.close(old_cwd)

    def enter(self, images) -> None:
        """In the root task, in its other namespaces, before it forks: join the mount namespace
        (root and cwd become the restored root) and make the namespace-bound mounts."""
        k.syscall("setns", self.ns_fd, k.CLONE_NEWNS)
        b = _Builder(self.tree, self.clones, images, None)
        # peer groups the builder made: a late mount joins them by binding from their first
        b.groups = {e.shared: e.id for e in reversed(self.tree.mounts)
                    if e.shared and not e.ext_peer and e.id not in self.late}
        b.run(self.late)

    def close(self) -> None:
        for fd in [self.ns_fd, self.root_fd, *self.dirs.values(), *self.clones.values()]:
            os.close(fd)
        self.dirs.clear()


def _builder_main(tree, sources, late, images, w: int, r: int) -> None:
    """The builder child: never returns."""
    code = 1
    try:
        try:
            k.syscall("unshare", k.CLONE_NEWNS)
            k.mount(None, "/", None, k.MS_REC | k.MS_SLAVE)     # nothing below reaches the host
            clones = {i: k.open_tree(k.AT_FDCWD, p, k.OPEN_TREE_CLONE | os.O_CLOEXEC) for i, p in sources.items()}
            yard = "/tmp"           # in this namespace only; every source is already held
            k.mount("lxc-cr-yard", yard, "tmpfs", k.MS_NOSUID | k.MS_NODEV, "mode=700")
            top = yard + "/root"
            os.mkdir(top, 0o700)
            k.move_mount_fd(clones.pop(tree.mounts[0].id), top)
            root_fd = os.open(top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            b = _Builder(tree, clones, images, root_fd)
            b.set_flags(tree.mounts[0], f"/proc/self/fd/{root_fd}")
            b.run({e.id for e in tree.mounts[1:]} - late)
            os.fchdir(root_fd)
            k.pivot_root(".", ".")
            k.umount2(".", k.MNT_DETACH)      # the old root, stacked on ours by pivot_root
            os.chdir("/")
            b.set_propagation(tree.mounts[0], "/")     # pivot_root refuses a shared root
            # external mounts on top of namespace-bound ones are the root task's to attach
            os.write(w, ("ok" + "".join(f" {i}:{fd}" for i, fd in clones.items())).encode())
        except (OSError, ImageError, RestoreError) as e:
            os.write(w, str(e).encode()[:4000])
            return
        os.close(w)
        os.read(r, 1)           # until the orchestrator holds the namespace
        code = 0
    except BaseException as e:  # anything else is a bug: say where
        import traceback
        os.write(w, "".join(traceback.format_exception_only(type(e), e)).strip().encode()[:4000])
    finally:
        os._exit(code)


class _Builder:
    """Makes mounts of the tree.  In the builder, mountpoints are resolved under the new root
    (root_fd; symlinks in the rootfs cannot lead out of it) afresh at each use, so that a path
    names whatever is mounted there by then; in the root task, which has joined the namespace,
    they are plain paths (root_fd None)."""

    def __init__(self, tree, clones: dict, images, root_fd: int | None):
        self.by_id = {e.id: e for e in tree.mounts}
        self.clones, self.images, self.root_fd = clones, images, root_fd
        self.groups: dict[int, int] = {}       # peer group -> a restored mount of it
        self.fds: list[int] = []
        self.peer_of = 0                        # the mount being made was bound from this peer

    def at(self, mountpoint: str) -> str:
        if self.root_fd is None:
            return mountpoint
        try:
            fd = k.openat2(self.root_fd, mountpoint, os.O_PATH | os.O_CLOEXEC | os.O_NOFOLLOW, k.RESOLVE_IN_ROOT)
        except OSError as e:
            raise RestoreError(f"mountpoint {mountpoint}: {e.strerror}") from None
        self.fds.append(fd)
        return f"/proc/self/fd/{fd}"

    def run(self, ids: set) -> None:
        for e in self.by_id.values():
            if e.id in ids:
                fault_point(f"mount:{e.mountpoint}")     # LXC_CR_FAULT=mount:MOUNTPOINT
                try:
                    if self.make(e):
                        self.finish(e)
                except OSError as err:
                    raise RestoreError(f"mount at {e.mountpoint} ({e.fstype}): {err.strerror}") from None
                finally:
                    while self.fds:
                        os.close(self.fds.pop())

    def make(self, e) -> bool:
        pb = _pb()
        if e.kind == pb.Mount.EXTERNAL:
            if e.id not in self.clones:
                return False                            # an empty console: nothing to bind
            k.move_mount_fd(self.clones.pop(e.id), self.at(e.mountpoint))
        elif e.kind == pb.Mount.BIND:
            # a peer joins its group, or a slave its master's, by binding from a mount of it
            src = self.by_id[self.groups.get(e.shared) or self.groups.get(e.master) or e.bind_of]
            rel = _under(e.root, src.root)
            if rel is None:
                src = self.by_id[e.bind_of]
                rel = _under(e.root, src.root)
            self.peer_of = src.id if e.shared and src.shared == e.shared and src.master == e.master else 0
            k.mount(_join(self.at(src.mountpoint), rel), self.at(e.mountpoint), None, k.MS_BIND)
        else:
            ro = k.MS_RDONLY if e.sb_readonly and not e.content else 0
            k.mount(e.source or e.fstype, self.at(e.mountpoint), e.fstype, ro, e.options or None)
            if e.content:
                _fill_tmpfs(self.images, e, self.at(e.mountpoint))
                if e.sb_readonly:
                    k.mount(None, self.at(e.mountpoint), None, k.MS_REMOUNT | k.MS_RDONLY, e.options or None)
        return True

    def finish(self, e) -> None:
        target = self.at(e.mountpoint)
        self.set_flags(e, target)
        self.set_propagation(e, target)

    def set_flags(self, e, target: str) -> None:
        """Per-mount flags (read-only, nosuid, nodev, noexec, atime)."""
        atime = e.flags & ATIME or k.MS_STRICTATIME
        k.mount(None, target, None, k.MS_REMOUNT | k.MS_BIND | (e.flags & ~ATIME) | atime)

    def set_propagation(self, e, target: str) -> None:
        """Shared, slave, private, unbindable (a bind starts with its source's)."""
        if self.peer_of:
            self.peer_of = 0            # bound from a peer: the same propagation already
        else:
            self._propagation(e, target)
        if e.unbindable:
            k.mount(None, target, None, k.MS_UNBINDABLE)

    def _propagation(self, e, target: str) -> None:
        pb = _pb()
        if e.master and e.master in self.groups:
            k.mount(None, target, None, k.MS_SLAVE)      # bound from the master's group: now its slave
        elif not (e.master and e.kind in (pb.Mount.EXTERNAL, pb.Mount.ROOT)):
            # a master outside (the host's) stays only for what was bound from the host
            k.mount(None, target, None, k.MS_PRIVATE)
        if e.ext_peer:
            log.info("mount at %s was shared with mounts outside; restored as their slave", e.mountpoint)
        elif e.shared:
            k.mount(None, target, None, k.MS_SHARED)
            self.groups.setdefault(e.shared, e.id)


# --- tmpfs contents -------------------------------------------------------------------------

def _fill_tmpfs(images, e, target: str) -> None:
    """Unpack tmpfs-ID.img into the new tmpfs at target: files, directories, symlinks, hard
    links, FIFOs and device nodes with modes, owners and times.  Each member's directory is
    opened beneath the mount without following symlinks: no member can write outside it."""
    import tarfile          # loaded by prepare(): the root task no longer sees our paths
    top = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    dirs = []
    try:
        with os.fdopen(images.open(e.content), "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for m in tar:
                _unpack(tar, m, top, e.content)
                if m.isdir():
                    dirs.append(m)
            for m in reversed(dirs):        # directories last: filling them changed their times
                _in_parent(top, m.name, e.content, lambda d, name, m=m: _attrs(d, name, m))
    except (tarfile.TarError, EOFError) as ex:
        raise ImageError(f"{e.content}: {ex}") from None
    finally:
        os.close(top)


def _in_parent(top: int, member: str, where: str, fn):
    """fn(dirfd, name) with the member's directory open (name '' for the top itself)."""
    parts = [p for p in member.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"{where}: member {member!r} leaves the mount")
    if not parts:
        return fn(top, "")
    d = k.openat2(top, "/".join(parts[:-1]) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC,
                  k.RESOLVE_BENEATH | k.RESOLVE_NO_SYMLINKS)
    try:
        return fn(d, parts[-1])
    finally:
        os.close(d)


def _unpack(tar, m, top: int, where: str) -> None:
    def create(d: int, name: str) -> None:
        if not name:
            pass                                    # the mount's own root: attributes only
        elif m.isdir():
            os.mkdir(name, 0o700, dir_fd=d)
        elif m.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=d)
            with os.fdopen(fd, "wb") as out, tar.extractfile(m) as data:
                while chunk := data.read(1 << 20):
                    out.write(chunk)
        elif m.issym():
            os.symlink(m.linkname, name, dir_fd=d)
        elif m.islnk():
            _in_parent(top, m.linkname, where, lambda sd, sname: os.link(
                sname, name, src_dir_fd=sd, dst_dir_fd=d, follow_symlinks=False))
            return                                  # the same inode: its attributes are set
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=d)
        else:
            raise ImageError(f"{where}: member {m.name!r} has an unsupported type")
        if not m.isdir():
            _attrs(d, name, m)
    _in_parent(top, m.name, where, create)


def _attrs(d: int, name: str, m) -> None:
    """Owner, mode and modification time of one unpacked member (name '' : d itself)."""
    if not name:
        os.chown(d, m.uid, m.gid)
        os.chmod(d, m.mode & 0o7777)
        os.utime(d, (m.mtime, m.mtime))
        return
    os.chown(name, m.uid, m.gid, dir_fd=d, follow_symlinks=False)
    if not m.issym():
        os.chmod(name, m.mode & 0o7777, dir_fd=d)       # after chown, which clears set-id bits
    os.utime(name, (m.mtime, m.mtime), dir_fd=d, follow_symlinks=False)
