"""kvmnet's error tree. Library code raises these; only the CLI turns them
into messages and exit codes (it never calls sys.exit elsewhere).

    KvmnetError                 base: str(e) is the user-facing message
    ├── SpecError               the spec file is bad: .problems, each FILE:LINE:COL
    ├── LiveError               talking to the host failed (libvirt down, denied, ...)
    │   ├── OwnershipError      an object exists that kvmnet does not own
    │   └── UnsafePathError     a file would be written through a symlink or a folder
    │                           another user can change (kvmnet.backend.files)
    ├── RenderError             an artefact would carry what its format must not (a line
    │                           break, an address's scope id, two files of one name):
    │                           nothing is written (kvmnet.render.guard)
    ├── PlanError               the plan cannot be made or would be unsafe
    └── LockError               another apply holds the lock
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Problem:
    """One finding about a spec, printed as FILE:LINE:COL: severity: message."""

    file: str
    line: int
    col: int
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}"

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.message)

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "col": self.col,
                "severity": self.severity, "message": self.message}


class KvmnetError(Exception):
    """Base of every error kvmnet expects and reports without a traceback."""


class SpecError(KvmnetError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class LiveError(KvmnetError):
    pass


class OwnershipError(LiveError):
    pass


class UnsafePathError(LiveError):
    pass


class RenderError(KvmnetError):
    pass


class PlanError(KvmnetError):
    pass


class LockError(KvmnetError):
    pass


def close_matches(word: str, options: Sequence[str], n: int = 1, cutoff: float = 0.6
                  ) -> list[str]:
    """difflib.get_close_matches, imported when a did-you-mean is asked for (start-up)."""
    import difflib

    return difflib.get_close_matches(word, options, n=n, cutoff=cutoff)
