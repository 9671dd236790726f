"""A spec's owner when it says none: its file's (or folder's) absolute path.

A spec read from standard input (`-`), or from a pipe or a device (`/dev/stdin`, a
shell's `<(...)`), has no path that stays the same from one run to the next: `-` would
make every piped spec one owner (so one could remove another's networks), and
`/dev/stdin` resolves to a new `pipe:[N]` each run (so a spec would own nothing it made
before, and its generated MACs would change). Such a spec must say `owner:` itself."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kvmnet.errors import KvmnetError, Problem, SpecError
from kvmnet.model.types import not_one_line


def _needs_owner(file: str, what: str) -> SpecError:
    return SpecError([Problem(file, 0, 0, (
        f"{what} says no owner:, and has no file path to take one from (kvmnet records "
        "the owner on every network and NIC it makes; the path of a pipe differs from run "
        "to run): write owner: NAME at the top of the spec"))])


def default_owner(path: Path) -> str:
    """A spec without `owner:` is owned by its file's absolute path (symlinks resolved):
    two spec files never own the same objects unless they say the same owner. A spec
    from stdin, a pipe or a device has no such path: KvmnetError saying to write one."""
    if str(path) == "-":
        raise _needs_owner("<stdin>", "a spec read from standard input")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG  # (a missing file fails where it is read, saying so)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _needs_owner(str(path), "a spec read from a pipe or a device")
    owner = str(Path(path).resolve())
    if not_one_line(owner) is not None or len(owner) > 1024:
        raise KvmnetError(f"the path of {str(path)!r} cannot name the spec's owner (it is "
                          "recorded on every network kvmnet makes): write owner: NAME in "
                          "the spec")
    return owner
