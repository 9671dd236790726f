"""Golden-file comparison shared by the renderer tests (STYLE.md #5)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REGEN = os.environ.get("KVMNET_REGEN_GOLDEN") == "1"


def assert_golden(out_dir: Path, files: dict[str, str]) -> None:
    """files == the tree under out_dir, names and contents; KVMNET_REGEN_GOLDEN=1 rewrites."""
    if REGEN:
        shutil.rmtree(out_dir, ignore_errors=True)
        for rel, text in files.items():
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / rel).write_text(text)
    expected = {p.relative_to(out_dir).as_posix(): p.read_text()
                for p in sorted(out_dir.rglob("*")) if p.is_file()} if out_dir.is_dir() else {}
    assert sorted(files) == sorted(expected), (
        f"{out_dir}: generated files differ from golden (KVMNET_REGEN_GOLDEN=1 rewrites)")
    for rel, text in files.items():
        assert text == expected[rel], f"{out_dir / rel} differs (KVMNET_REGEN_GOLDEN=1 rewrites)"
