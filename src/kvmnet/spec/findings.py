"""Findings: the problems semantic checks collect, each at the position of its value.

Its own module so that every module of checks (spec.check, spec.hosts) can take one
without importing another."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kvmnet.errors import Problem
from kvmnet.spec.load import Path_, Positions, format_path


@dataclass
class Findings:
    pos: Positions
    file: str
    items: list[Problem] = field(default_factory=list)
    pruned: frozenset[Path_] = frozenset()   # what load left out (see the docstring)

    def error(self, path: Path_, msg: str, key: bool = False, refs: Iterable[Path_] = ()
              ) -> None:
        if not (self.pruned and self._pruned(path, refs)):
            self.items.append(Problem(self.pos.file_of(path, self.file),
                                      *self.pos.find(path, key), _where(path) + msg))

    def warn(self, path: Path_, msg: str, key: bool = False, refs: Iterable[Path_] = ()
             ) -> None:
        if not (self.pruned and self._pruned(path, refs)):
            self.items.append(Problem(self.pos.file_of(path, self.file),
                                      *self.pos.find(path, key), _where(path) + msg,
                                      "warning"))

    def _pruned(self, path: Path_, refs: Iterable[Path_]) -> bool:
        """Is path, or a path it refers to, at, inside or above a left-out value?"""
        return any(a[:len(b)] == b or b[:len(a)] == a
                   for a in (path, *refs) for b in self.pruned)


def _where(path: Path_) -> str:
    return format_path(path) + ": " if path else ""
