"""Writing files safely: atomically, under a root, with a backup of what is replaced,
and never through a symlink someone else could have planted.

kvmnet runs as root and writes host configuration, its journal and its lock. A
user who can change a folder on the way to such a file could put a symlink
there and have root write (or truncate) any file on the host. So every write:

- refuses a target that is a symlink, or anything but a regular file;
- refuses a path through a folder that a user other than root (or whoever runs
  kvmnet) owns or can write (a world-writable folder is fine only when it is
  sticky, like /tmp: others cannot rename or replace what is ours there), and a
  symlink on the way that such a user owns;
- writes a new temp file (O_EXCL, O_NOFOLLOW, mode set on the open file) in the
  same folder, fsyncs it, renames it over the target (rename replaces a name,
  it never follows one) and fsyncs the folder, so a crash leaves the old file or
  the new one, never half of one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kvmnet.errors import UnsafePathError


def write_atomic(path: Path, text: str, mode: int = 0o644, backup: bool = False) -> Path | None:
    """Write text to path via a temp file + rename; return the backup path, if one was made."""
    path = Path(path)
    make_dirs(path.parent)
    saved: Path | None = None
    if backup:
        old = read_regular(path)
        if old is not None:
            data, old_mode = old
            saved = path.with_name(path.name + ".kvmnet-bak")
            write_bytes_atomic(saved, data, old_mode)
    write_bytes_atomic(path, text.encode(), mode)
    return saved


def write_bytes_atomic(path: Path, data: bytes, mode: int) -> None:
    path = Path(path)
    check_dir(path.parent)
    check_target(path)
    _replace(path, data, mode)
    fsync_dir(path.parent)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """path's content becomes data: a temp file beside it, fsynced, renamed over it (the
    folder is not fsynced here: the caller does, once per folder)."""
    import tempfile  # here: it loads random and shutil, and most runs write nothing

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # on the open file: never a name swapped in later
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_regular(path: Path) -> tuple[bytes, int] | None:
    """(content, mode) of a regular file, None if there is none; never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        check_target(path)  # a symlink (ELOOP): say so
        raise UnsafePathError(f"cannot read {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is not a regular file: kvmnet does not replace it")
        return f.read(), stat.S_IMODE(st.st_mode)


def fsync_dir(folder: Path) -> None:
    """Make a rename in folder durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_target(path: Path) -> None:
    """The file about to be replaced is a regular file, or not there at all."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symlink: kvmnet never writes through one (it "
                              "could point anywhere); remove it and apply again")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{path} is not a regular file: kvmnet does not replace it")


def make_dirs(folder: Path, mode: int = 0o755) -> None:
    """mkdir -p, checking the folders on the way before and after."""
    folder = Path(os.path.abspath(folder))
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check_dir(existing)
    folder.mkdir(mode=mode, parents=True, exist_ok=True)
    check_dir(folder)


def check_dir(folder: Path) -> None:
    """Refuse a folder that someone other than root or us could change, or that is
    reached through such a folder or through such a user's symlink."""
    me, my_group = os.geteuid(), os.getegid()
    folder = Path(os.path.abspath(folder))
    real_dirs: set[Path] = set()
    for prefix in [*reversed(folder.parents), folder]:
        try:
            st = os.lstat(prefix)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, me):
            raise UnsafePathError(f"{prefix} is a symlink owned by uid {st.st_uid}: kvmnet "
                                  f"does not write through it (it was on the way to {folder})")
        real = Path(os.path.realpath(prefix))
        real_dirs.update([real, *real.parents])
    for d in sorted(real_dirs):
        try:
            st = os.stat(d)
        except FileNotFoundError:
            continue
        problem = _unsafe(st, me, my_group)
        if problem:
            raise UnsafePathError(f"{d} {problem}: another user could plant a symlink there, "
                                  f"so kvmnet does not write under it (on the way to {folder})")


def _unsafe(st: os.stat_result, me: int, my_group: int) -> str:
    if st.st_uid not in (0, me):
        return f"is owned by uid {st.st_uid}"
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if st.st_mode & stat.S_IWOTH and not sticky:
        return "is writable by every user"
    if st.st_mode & stat.S_IWGRP and st.st_gid not in (0, my_group) and not sticky:
        return f"is writable by group {st.st_gid}"
    return ""


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write {relative path: text} under root; refuses paths that escape root.

    Every path and folder is checked before the first file is written, so an unsafe
    one anywhere in the tree leaves every file as it was. Each folder is checked
    (make_dirs) once: a folder that passed cannot be changed by anyone but root or us,
    so the check holds for the rest of the tree (checking it again for every file was
    quadratic in the depth). Each folder is fsynced once, at the end."""
    from kvmnet.render.hostconf import file_mode  # (the host renderers: only render -o)

    base = Path(root).resolve()
    checked: set[Path] = set()
    todo: list[tuple[Path, bytes, int]] = []
    for rel, text in sorted(files.items()):
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise UnsafePathError(f"refusing to write outside {root}: {rel}")
        target = (base / rel).parent.resolve() / Path(rel).name
        if base not in target.parents:
            raise UnsafePathError(f"refusing to write outside {root}: {rel}")
        on_host = rel.split("/", 2)[2] if rel.startswith("host/") else rel  # host/RENDERER/etc/..
        if target.parent not in checked:
            make_dirs(target.parent)
            checked.add(target.parent)
        check_target(target)
        todo.append((target, text.encode(), file_mode(on_host)))
    for target, data, mode in todo:
        _replace(target, data, mode)
    for folder in sorted(checked):
        fsync_dir(folder)
