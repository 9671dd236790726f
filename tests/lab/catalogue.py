"""The bad-input catalogue, tests/data/bad/: specs that kvmnet must refuse.

Each file opens with one or more lines ``# expect: LINE:COL: <a substring of the
message>``, the errors it must give (test_bad_input.py, test_zero_writes.py).
"""

from __future__ import annotations

import re
from pathlib import Path

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
CASES = sorted(BAD.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


def expectations(path: Path) -> list[tuple[int, int, str]]:
    """(line, col, message part) of each ``# expect:`` line at the top of PATH."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = EXPECT.match(line)
        if not m:
            break
        out.append((int(m[1]), int(m[2]), m[3]))
    return out
