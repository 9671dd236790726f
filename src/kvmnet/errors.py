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

import re
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
        """--json's problem: where, what, and the spec path and the advice as fields of
        their own (`path`: the dotted key the message starts with, or null; `hint`: what
        to write or do instead, or null), for a script or an editor to show apart."""
        path, hint = split_message(self.message)
        return {"file": self.file, "line": self.line, "col": self.col,
                "severity": self.severity, "message": self.message, "path": path,
                "hint": hint}


# A spec path as spec.load.format_path writes it: names, indexes and quoted keys by dots.
_PATH = re.compile(r'^((?:[A-Za-z0-9_][A-Za-z0-9_.@+-]*|"(?:[^"\\]|\\.)*")'
                   r'(?:\.(?:[A-Za-z0-9_][A-Za-z0-9_@+-]*|"(?:[^"\\]|\\.)*"))*): ')
# The words kvmnet's advice starts with ("...: write 10.0.0.1/24", "...; use mode: nat").
_ADVICE = re.compile(
    r"(?:^|: |; |\. |, or |\()((?:write|use|add|remove|pick|rename|give|set|quote|save|"
    r"run|put|move|drop|choose|delete|change|make|fix|omit|leave|list|keep|spell|indent|"
    r"install|replace|split|join|turn|mark|adopt|attach|declare|name|start|stop|enable|"
    r"disable|did you mean|pass|apply|check|free|shorten|lower|raise|define|end|merge|map|"
    r"each)\b.*)$",
    re.IGNORECASE)


def split_message(message: str) -> tuple[str | None, str | None]:
    """(the spec path a problem's message starts with, the advice it ends with)."""
    m = _PATH.match(message)
    path = m.group(1) if m and "." in m.group(1) or m and " " not in m.group(1) else None
    rest = message[m.end():] if m else message
    a = _ADVICE.search(rest)
    return path, (a.group(1).rstrip(")") if a else None)


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
