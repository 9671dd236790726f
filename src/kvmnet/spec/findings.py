"""Findings: the problems semantic checks collect, each at the position of its value.

Its own module so that every module of checks (spec.check, spec.hosts) can take one
without importing another."""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmnet.errors import Problem
from kvmnet.spec.load import Path_, Positions, format_path


@dataclass
class Findings:
    pos: Positions
    file: str
    items: list[Problem] = field(default_factory=list)

    def error(self, path: Path_, msg: str, key: bool = False) -> None:
        self.items.append(Problem(self.file, *self.pos.find(path, key), _where(path) + msg))

    def warn(self, path: Path_, msg: str, key: bool = False) -> None:
        self.items.append(Problem(self.file, *self.pos.find(path, key), _where(path) + msg,
                                  "warning"))


def _where(path: Path_) -> str:
    return format_path(path) + ": " if path else ""
