"""A spec's owner when it says none: its file's absolute path."""

from __future__ import annotations

from pathlib import Path

from kvmnet.errors import KvmnetError
from kvmnet.model.types import not_one_line


def default_owner(path: Path) -> str:
    """A spec without `owner:` is owned by its file's absolute path (symlinks resolved):
    two spec files never own the same objects unless they say the same owner. ('-',
    stdin: 'stdin'.)"""
    if str(path) == "-":
        return "stdin"
    owner = str(Path(path).resolve())
    if not_one_line(owner) is not None or len(owner) > 1024:
        raise KvmnetError(f"the path of {str(path)!r} cannot name the spec's owner (it is "
                          "recorded on every network kvmnet makes): write owner: NAME in "
                          "the spec")
    return owner
