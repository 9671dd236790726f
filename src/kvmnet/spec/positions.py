"""Where each value of a loaded spec stands in its file, so every message can say
FILE:LINE:COL. Its own module: load fills it, and errors, findings and check read it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

Path_ = tuple[str | int, ...]


@dataclass
class Positions:
    """Where each value of the loaded document starts: path -> (line, col), 1-based."""

    at: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    # A spec merged from a folder's files (spec.sources): the file each path is in.
    files: dict[Path_, str] = field(default_factory=dict)

    def file_of(self, path: Sequence[str | int], default: str) -> str:
        """The file a path's value is in: its own or its nearest ancestor's, else
        default (a spec of one file keeps no files)."""
        if not self.files:
            return default
        p = tuple(path)
        while p:
            if p in self.files:
                return self.files[p]
            p = p[:-1]
        return default

    def find(self, path: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        """Best position for a path; falls back to the nearest known ancestor."""
        p = tuple(path)
        while p:
            table = self.keys if key and p in self.keys else self.at
            if p in table:
                return table[p]
            p = p[:-1]
        return self.at.get((), (1, 1))
