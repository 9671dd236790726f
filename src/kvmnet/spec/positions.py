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

    def find(self, path: Sequence[str | int], key: bool = False) -> tuple[int, int]:
        """Best position for a path; falls back to the nearest known ancestor."""
        p = tuple(path)
        while p:
            table = self.keys if key and p in self.keys else self.at
            if p in table:
                return table[p]
            p = p[:-1]
        return self.at.get((), (1, 1))
