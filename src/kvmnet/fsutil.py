"""Writing files safely: atomically, under a root, with a backup of what is replaced."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kvmnet.render.hostconf import file_mode


def write_atomic(path: Path, text: str, mode: int = 0o644, backup: bool = False) -> Path | None:
    """Write text to path via a temp file + rename; return the backup path, if one was made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    saved: Path | None = None
    if backup and path.exists():
        saved = path.with_name(path.name + ".kvmnet-bak")
        data = path.read_bytes()
        write_bytes_atomic(saved, data, path.stat().st_mode & 0o777)
    write_bytes_atomic(path, text.encode(), mode)
    return saved


def write_bytes_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write {relative path: text} under root; refuses paths that escape root."""
    base = root.resolve()
    for rel, text in sorted(files.items()):
        target = (base / rel).resolve()
        if base not in target.parents:
            raise ValueError(f"refusing to write outside {root}: {rel}")
        on_host = rel.split("/", 2)[2] if rel.startswith("host/") else rel  # host/RENDERER/etc/..
        write_atomic(target, text, file_mode(on_host))
