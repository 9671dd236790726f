"""Persistent host config files under a root directory, written so that they can
be put back exactly.

`prepare` reads what is there now (bytes, mode, owner, which parent folders are
missing) and keeps it in a `FileChange`; `write` writes the new text atomically
and a backup copy of each file it replaces; `restore` puts every path back as it
was, byte for byte (a file that did not exist is removed again, and so are the
backups and folders `write` made). The rollback journal carries FileChanges to
another process (the watchdog) and across a reboot (kvmnet.apply.bridge.journal).

Backups go to ROOT/var/backups/kvmnet/<path>.<stamp>, not beside the file:
ifupdown sources every file in interfaces.d/ and NetworkManager loads every
keyfile in system-connections/, so a copy next to the original would be read as
configuration too.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from kvmnet.backend.files import read_regular, remove, write_bytes_atomic
from kvmnet.errors import LiveError

BACKUP_DIR = "var/backups/kvmnet"


def _from_base64(value: object) -> bytes:
    """Old file content as the journal's JSON carries it: standard base64, checked (a
    character outside the alphabet is an error, not skipped)."""
    if isinstance(value, bytes):  # (validating a FileChange made in Python)
        return value
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not base64: {e}") from None


def _to_base64(value: bytes) -> str:
    return base64.b64encode(value).decode()


class _AsBase64:
    """pydantic's hook (its public __get_pydantic_core_schema__) for bytes that JSON
    carries as standard base64 text, as the journal always has (pydantic's own base64
    is URL-safe: a kvmnet before the typed journal would misread it). pydantic is
    imported only when the journal's codec is first built: `kvmnet confirm` with
    nothing pending never loads it."""

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            _from_base64, serialization=core_schema.plain_serializer_function_ser_schema(
                _to_base64, when_used="json"))


Base64 = Annotated[bytes, _AsBase64]


@dataclass(frozen=True)
class FileChange:
    """One file to write, with everything needed to put the old one back."""

    path: str                      # relative to root, e.g. etc/netplan/90-kvmnet.yaml
    text: str                      # the new content
    before: Base64 | None          # the old content; None = the file did not exist
    mode: int = 0o644              # old mode (when it existed)
    uid: int = 0
    gid: int = 0
    backup: str | None = None      # relative path of the backup copy write() makes
    new_dirs: tuple[str, ...] = () # folders write() creates, outermost first



def under(root: Path, rel: str) -> Path:
    """ROOT/rel, refusing a path that leaves root (.., absolute, symlinked away).

    The last part is never resolved: a symlink planted there must not turn a write
    of ROOT/etc/netplan/x.yaml into a write of the file it points to (fsutil then
    refuses the symlink itself)."""
    base = root.resolve()
    rel_path = Path(rel.lstrip("/"))
    if ".." in rel_path.parts or not rel_path.parts:
        raise LiveError(f"refusing to write outside {root}: {rel}")
    target = (base / rel_path).parent.resolve() / rel_path.name
    if target != base and base not in target.parents:
        raise LiveError(f"refusing to write outside {root}: {rel}")
    return target


def prepare(root: Path, files: Mapping[str, str], stamp: str | None = None
            ) -> list[FileChange]:
    """The changes that make root hold `files`; a file that already has the text is left out."""
    from kvmnet.render.hostconf import file_mode  # (here: see write)

    stamp = stamp or time.strftime("%Y%m%dT%H%M%S")
    out: list[FileChange] = []
    planned_dirs: set[str] = set()
    for rel in sorted(files):
        text = files[rel]
        path = under(root, rel)
        if os.path.isdir(path) and not os.path.islink(path):
            raise LiveError(f"cannot write {path}: it is a folder")
        found = read_regular(path)  # a symlink: refused before anything is read or written
        before: bytes | None = None
        mode, uid, gid = file_mode(rel), 0, 0
        if found is not None:
            before = found[0]
            if before == text.encode():
                continue
            st = os.stat(path, follow_symlinks=False)
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        backup = _free_backup(root, rel, stamp) if before is not None else None
        dirs = _missing_dirs(root, rel, planned_dirs)
        if backup:
            dirs += _missing_dirs(root, backup, planned_dirs)
        out.append(FileChange(rel, text, before, mode, uid, gid, backup, tuple(dirs)))
    return out


def _free_backup(root: Path, rel: str, stamp: str) -> str:
    name = f"{BACKUP_DIR}/{rel}.{stamp}"
    n = 1
    while os.path.lexists(under(root, name)):
        n += 1
        name = f"{BACKUP_DIR}/{rel}.{stamp}.{n}"
    return name


def _missing_dirs(root: Path, rel: str, planned: set[str]) -> list[str]:
    """Parent folders of rel that do not exist yet (and no earlier change makes)."""
    parts = Path(rel).parts[:-1]
    missing = []
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d not in planned and not under(root, d).exists():
            missing.append(d)
            planned.add(d)
    return missing


def write(root: Path, changes: Iterable[FileChange]) -> None:
    """Write each change atomically; the old file is copied to its backup first."""
    # (here: the host renderers load YAML, and confirm and rollback, which read this
    # module's records, never need them)
    from kvmnet.render.hostconf import file_mode

    for c in changes:
        path = under(root, c.path)
        if c.backup and c.before is not None:
            write_bytes_atomic(under(root, c.backup), c.before, 0o600)
        write_bytes_atomic(path, c.text.encode(), file_mode(c.path))


def restore(root: Path, changes: Iterable[FileChange]) -> list[str]:
    """Put every path back as prepare() found it; returns what it did, one line each.

    Safe to run twice, and after a write() that stopped half way.
    """
    done: list[str] = []
    changes = list(changes)
    for c in reversed(changes):
        path = under(root, c.path)
        if c.before is None:
            if remove(path):
                done.append(f"removed {c.path}")
        elif _now(path) != (c.before, c.mode, c.uid, c.gid):
            write_bytes_atomic(path, c.before, c.mode, owner=(c.uid, c.gid))
            done.append(f"restored {c.path}")
        if c.backup:
            remove(under(root, c.backup))
    for c in reversed(changes):
        for d in reversed(c.new_dirs):
            try:
                under(root, d).rmdir()
            except OSError:
                pass  # gone already, or someone else put a file there: keep it
    return done


def _now(path: Path) -> tuple[bytes, int, int, int] | None:
    """What path holds now: content, mode, owner (None: nothing, or not a plain file)."""
    try:
        st = os.stat(path, follow_symlinks=False)
        found = read_regular(path)
    except (OSError, LiveError):
        return None
    if found is None:
        return None
    return found[0], stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
