"""`kvmnet render -o DIR`: the files written, and a manifest of them in DIR, so that the
next render into DIR removes the files of the last one it no longer makes (a network
that left the spec, a renderer's file renamed) and nothing else.

The manifest, DIR/.kvmnet-render.json, lists each file kvmnet wrote with the SHA-256 it
wrote. A stale file is removed only when it is still what kvmnet wrote: one a person
changed since is kept (and said so), as is every file the manifest does not name. A
folder is removed only when it is empty once its stale files are gone, and never DIR.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from kvmnet.backend.files import read_regular, remove, write_atomic, write_tree
from kvmnet.errors import LiveError

MANIFEST = ".kvmnet-render.json"


@dataclass
class Rendered:
    written: list[str]
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)   # stale but changed by someone: left


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _old(root: Path) -> dict[str, str]:
    """The last render's manifest ({path: sha256}); {} when there is none or it is not
    one of ours (then nothing is removed)."""
    try:
        found = read_regular(root / MANIFEST)  # (never through a symlink)
        data = json.loads(found[0]) if found is not None else None
    except (OSError, ValueError, LiveError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("kvmnet") == 1 else None
    if not isinstance(files, dict):
        return {}
    return {p: h for p, h in files.items() if isinstance(p, str) and isinstance(h, str)}


def write_rendered(root: Path, files: dict[str, str]) -> Rendered:
    """files under root (write_tree's checks), the stale ones of the last render removed."""
    old = _old(root)
    write_tree(root, files)
    done = Rendered(written=sorted(files))
    base = Path(os.path.abspath(root))
    for rel in sorted(set(old) - set(files)):
        path = base / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute() or rel == MANIFEST:
            continue   # (a manifest names only paths under root; this one was edited)
        try:  # (the folders on the way checked, never through a symlink)
            found = read_regular(path)
        except (OSError, LiveError):
            found = None
            if os.path.lexists(path):
                done.kept.append(rel)  # not a file of ours to touch
            continue
        if found is None:
            continue   # gone already
        if _digest(found[0]) != old[rel]:
            done.kept.append(rel)
            continue
        remove(path)
        done.removed.append(rel)
        _prune(base, path.parent)
    manifest = {"kvmnet": 1, "about": "files kvmnet render wrote here; the next render "
                "removes those it no longer makes", "files": {
                    p: _digest(t.encode()) for p, t in sorted(files.items())}}
    write_atomic(base / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return done


def _prune(base: Path, folder: Path) -> None:
    """Remove folder and its parents below base while they are empty."""
    while folder != base and base in folder.parents:
        try:
            folder.rmdir()
        except OSError:   # not empty (or not ours to remove)
            return
        folder = folder.parent
