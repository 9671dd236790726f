"""The one way kvmnet writes, replaces, appends to and removes a file (render -o, graph
-o, host configs, backups, journal, state, lock, hook): never through a symlink someone
else could have planted, never in a folder another user can change. Each write:

- walks to the folder one component at a time, open(O_DIRECTORY|O_NOFOLLOW) relative
  to the folder before (a directory fd, never a name that could be swapped later), and
  checks each folder: owned by root or us, not writable by another user or group (a
  world-writable one only when sticky, like /tmp). A symlink on the way is followed
  only when root (or we) own it; a file on the way is "not a folder";
- refuses a target that is a symlink, or anything but a regular file;
- writes a temp file of an unguessable name in that folder (O_CREAT|O_EXCL|O_NOFOLLOW
  on the folder's fd), sets mode and owner on the open file, fsyncs it, renames it over
  the target within the folder (rename never follows a name) and fsyncs the folder.

Failures are UnsafePathError (something planted) or LiveError (the file system said
no), one line naming the path.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from kvmnet.errors import LiveError, UnsafePathError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_MAX_LINKS = 40


def _unsafe(st: os.stat_result, me: int, my_group: int) -> str:
    if st.st_uid not in (0, me):
        return f"is owned by uid {st.st_uid}"
    sticky = bool(st.st_mode & stat.S_ISVTX)
    if st.st_mode & stat.S_IWOTH and not sticky:
        return "is writable by every user"
    if st.st_mode & stat.S_IWGRP and st.st_gid not in (0, my_group) and not sticky:
        return f"is writable by group {st.st_gid}"
    return ""


def _check_fd(fd: int, where: Path, goal: Path) -> None:
    problem = _unsafe(os.fstat(fd), os.geteuid(), os.getegid())
    if problem:
        raise UnsafePathError(f"{where} {problem}: another user could plant a symlink there, "
                              f"so kvmnet does not write under it (on the way to {goal})")


def _step(fd: int, name: str, where: Path, goal: Path, create: bool, mode: int
          ) -> int | str | None:
    """Open folder `name` in folder fd: its fd; the text of a symlink root or we own
    (to follow); None when it was just made (look again)."""
    try:
        return os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            raise
        try:
            os.mkdir(name, mode, dir_fd=fd)
        except FileExistsError:
            pass  # made meanwhile: looked at again like any other
        return None
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"cannot write {goal}: {where / name} is not a folder (name a "
                              "folder, or a path that does not exist yet)")
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafePathError(f"{where / name} is a symlink owned by uid {st.st_uid}: kvmnet "
                              f"does not write through it (it was on the way to {goal})")
    return os.readlink(name, dir_fd=fd)


def _open_dir(path: Path | str, create: bool = False, mode: int = 0o755,
              goal: Path | None = None) -> int:
    """The checked folder at path as an fd (made, with its parents, when `create`);
    `goal`: what is written there, for the messages (else the folder)."""
    todo = list(Path(os.path.abspath(path)).parts[1:])
    goal = Path(os.path.abspath(goal or path))
    where = Path("/")
    fd = os.open("/", _DIR)
    links = 0
    try:
        _check_fd(fd, where, goal)
        while todo:
            name = todo.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                got: int | str | None = os.open("..", _DIR, dir_fd=fd)
                where = where.parent
            else:
                got = _step(fd, name, where, goal, create, mode)
                where = where / name
            if got is None or isinstance(got, str):
                where = where.parent
                if got is None:
                    todo.insert(0, name)
                    continue
                links += 1
                if links > _MAX_LINKS:
                    raise UnsafePathError(f"too many symlinks on the way to {goal}")
                target = Path(got)
                todo[:0] = list(target.parts[1:] if target.is_absolute() else target.parts)
                if target.is_absolute():
                    os.close(fd)
                    fd, where = os.open("/", _DIR), Path("/")
                continue
            os.close(fd)
            fd = got
            _check_fd(fd, where, goal)
        return fd
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def folder(path: Path | str, create: bool = True, mode: int = 0o755,
           goal: Path | None = None) -> Iterator[int]:
    """The checked folder at path, open (O_DIRECTORY) for the with block."""
    try:
        fd = _open_dir(path, create, mode, goal)
    except OSError as e:
        raise LiveError(f"cannot write under {path}: {e.strerror or e}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def make_dirs(path: Path | str, mode: int = 0o755) -> None:
    """mkdir -p, each folder on the way checked."""
    with folder(path, create=True, mode=mode):
        pass


def _kind(dfd: int, name: str, shown: Path) -> os.stat_result | None:
    """The target's lstat (a regular file), None when there is none."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{shown} is a symlink: kvmnet never writes through one (it "
                              "could point anywhere); remove it and try again")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePathError(f"{shown} is not a regular file: kvmnet does not replace it")
    return st


def _replace(dfd: int, name: str, data: bytes, mode: int,
             owner: tuple[int, int] | None = None) -> None:
    """name in folder dfd holds data: a temp file of an unguessable name beside it,
    fsynced, renamed over it (the folder is fsynced by the caller, once)."""
    tmp = f".{name[:200]}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600, dir_fd=dfd)
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), mode)  # on the open file: never a name swapped in later
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        raise


def _fsync(fd: int) -> None:
    with suppress(OSError):  # (some file systems refuse a folder's fsync)
        os.fsync(fd)


def write_bytes_atomic(path: Path | str, data: bytes, mode: int,
                       owner: tuple[int, int] | None = None) -> None:
    """path holds data, with mode (and owner): made with its folders, or replaced whole."""
    path = Path(path)
    with folder(path.parent, goal=path) as dfd:
        _kind(dfd, path.name, path)
        try:
            _replace(dfd, path.name, data, mode, owner)
        except OSError as e:
            raise LiveError(f"cannot write {path}: {e.strerror or e}") from None
        _fsync(dfd)


def write_atomic(path: Path | str, text: str, mode: int = 0o644, backup: bool = False
                 ) -> Path | None:
    """Write text to path; return the backup (PATH.kvmnet-bak), if one was made."""
    path = Path(path)
    saved: Path | None = None
    if backup:
        old = read_regular(path)
        if old is not None:
            saved = path.with_name(path.name + ".kvmnet-bak")
            write_bytes_atomic(saved, old[0], old[1])
    write_bytes_atomic(path, text.encode(), mode)
    return saved


def read_regular(path: Path | str) -> tuple[bytes, int] | None:
    """(content, mode) of a regular file, None if there is none; never follows a
    symlink, never reads through a folder another user can change."""
    found = _read(Path(path))
    return None if found is None else (found[0], stat.S_IMODE(found[1].st_mode))


def read_trusted(path: Path | str, what: str) -> bytes | None:
    """A file kvmnet acts on as root (a journal, a state file): read_regular, and only
    when root (or we) own it and no other user or group can write it."""
    path = Path(path)
    found = _read(path)
    if found is None:
        return None
    st = found[1]
    if st.st_uid not in (0, os.geteuid()):
        raise UnsafePathError(f"{what} {path} is owned by uid {st.st_uid}, not root: kvmnet "
                              "does not act on it (another user could have written it)")
    if st.st_mode & 0o022:
        raise UnsafePathError(f"{what} {path} can be written by other users (mode "
                              f"{stat.S_IMODE(st.st_mode):04o}): kvmnet does not act on it")
    return found[0]


def _read(path: Path) -> tuple[bytes, os.stat_result] | None:
    try:
        dfd = _open_dir(path.parent, goal=path)
    except FileNotFoundError:
        return None
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symlink: kvmnet never reads through one "
                                  "(it could point anywhere); remove it") from None
        raise
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is not a regular file: kvmnet does not read it")
        return f.read(), st


def open_file(path: Path | str, flags: int, mode: int = 0o600) -> int:
    """An fd of path opened with flags (O_NOFOLLOW added) in its checked folder (made
    when missing), kept only when it is a plain file of ours with one link: for the
    lock files and the watchdog's log. UnsafePathError for a symlink or such a file,
    else OSError as the kernel gives it."""
    path = Path(path)
    dfd = _open_dir(path.parent, create=True, goal=path)
    try:
        fd = os.open(path.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symlink; remove it") from None
        raise
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid not in (0, os.geteuid()):
        os.close(fd)
        raise UnsafePathError(f"{path} is not a plain file of ours (a hard link, another "
                              "user's file, or not a file); remove it")
    return fd


def remove(path: Path | str, symlink_only: bool = False) -> bool:
    """Unlink path (a regular file, or a symlink: never what it points to); True when
    there was one. `symlink_only`: anything but a symlink there is left alone."""
    path = Path(path)
    try:
        dfd = _open_dir(path.parent, goal=path)
    except FileNotFoundError:
        return False
    try:
        try:
            st = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISLNK(st.st_mode) and (symlink_only or not stat.S_ISREG(st.st_mode)):
            return False
        os.unlink(path.name, dir_fd=dfd)
        _fsync(dfd)
        return True
    except OSError as e:
        raise LiveError(f"cannot remove {path}: {e.strerror or e}") from None
    finally:
        os.close(dfd)


def symlink_atomic(target: str, link: Path | str) -> None:
    """link -> target, replacing only a symlink (rename never follows one)."""
    link = Path(link)
    with folder(link.parent, goal=link) as dfd:
        try:
            st = os.stat(link.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(f"{link} exists and is not a symlink: kvmnet does not "
                                      "replace it")
            if os.readlink(link.name, dir_fd=dfd) == target:
                return
        tmp = f".{link.name}.{secrets.token_hex(8)}.tmp"
        os.symlink(target, tmp, dir_fd=dfd)
        try:
            os.replace(tmp, link.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            os.unlink(tmp, dir_fd=dfd)
            raise
        _fsync(dfd)


def _tree_dir(parent: int, name: str, shown: Path) -> int:
    """Folder `name` in parent, made when missing; inside an output tree no symlink
    is followed at all, whoever owns it."""
    for _ in range(3):
        try:
            fd = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            try:
                os.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                pass
            continue
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a folder"
            raise UnsafePathError(f"{shown} is {what}: kvmnet does not write through it "
                                  "(remove it, or write to an empty folder)") from None
        try:
            _check_fd(fd, shown, shown)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise LiveError(f"cannot make {shown}: it keeps changing")


def write_tree(root: Path | str, files: dict[str, str]) -> None:
    """Write {relative path: text} under root; refuses paths that escape root.

    Every folder is opened (made) and checked and every target looked at before the
    first file is written, so an unsafe one anywhere in the tree leaves every file as
    it was. Each folder is fsynced once, at the end."""
    from kvmnet.render.hostconf import file_mode  # (the host renderers: only render -o)

    root = Path(root)
    for rel in files:
        parts = Path(rel).parts
        if not parts or ".." in parts or Path(rel).is_absolute():
            raise UnsafePathError(f"refusing to write outside {root}: {rel}")
    with folder(root) as base:
        fds: dict[tuple[str, ...], int] = {(): base}
        try:
            todo = []
            for rel, text in sorted(files.items()):
                parts = Path(rel).parts
                for i in range(1, len(parts)):
                    if parts[:i] not in fds:
                        fds[parts[:i]] = _tree_dir(fds[parts[:i - 1]], parts[i - 1],
                                                   root.joinpath(*parts[:i]))
                on_host = rel.split("/", 2)[2] if rel.startswith("host/") else rel
                dfd = fds[parts[:-1]]
                _kind(dfd, parts[-1], root / rel)
                todo.append((dfd, parts[-1], text.encode(), file_mode(on_host)))
            for dfd, name, data, mode in todo:
                _replace(dfd, name, data, mode)
            for fd in fds.values():
                _fsync(fd)
        except OSError as e:
            raise LiveError(f"cannot write under {root}: {e.strerror or e}"
                            + (f" ({e.filename})" if e.filename else "")) from None
        finally:
            for key, fd in fds.items():
                if key:
                    os.close(fd)
