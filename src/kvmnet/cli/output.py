"""What the commands print, through rich: the two streams, problems, plans, tables, JSON.

rich decides colour: a terminal gets styles, a pipe or a file the same characters plain.
Lines go to rich as Segments (text, style): rich's Text would wrap, split and measure
every line again, which took 0.3 s for a 1000-network plan and as long for its --json;
segments are written as they are (17,000 lines: 20 ms), styled on a terminal.

One thing rich leaves alone is escape sequences inside the text: it passes ESC, CSI and
the rest to the terminal. A network name read from libvirt or a guest's hostname from
a DHCP lease could then move the cursor, retitle the window or hide a line. So every
string printed here first has its control and bidi-override characters turned into
visible escapes (`\\x1b`), and nothing is read as rich markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, RenderableType
from rich.highlighter import JSONHighlighter
from rich.segment import Segment, Segments
from rich.style import Style
from rich.text import Text

if TYPE_CHECKING:  # (rich.table: ~10 ms of every start; only show and leases need it)
    from rich.table import Table

    from kvmnet.errors import Problem
    from kvmnet.plan import Action, Plan

# C0 controls but TAB and LF, DEL, C1 controls (CSI is \x9b), and the characters that
# reorder or break a line on screen (bidi embeddings, overrides, isolates; LS and PS).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029"
                     "\u202a-\u202e\u2066-\u2069]")


def _visible(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def safe(text: str) -> str:
    """text with every character a terminal would act on shown as an escape."""
    return _UNSAFE.sub(_visible, text)


def _json_safe(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"   # the same character, spelled as JSON allows


Line = list[Segment]
Part = str | tuple[str, str]


def styled(*parts: Part) -> Line:
    """A line from plain strings and (string, style) pairs, each string made safe."""
    return [Segment(safe(p)) if isinstance(p, str) else Segment(safe(p[0]), Style.parse(p[1]))
            for p in parts]


class Out:
    """stdout or stderr: a rich Console, written to as the module says. `options` go
    to the Console (tests: force_terminal=True, file=...)."""

    def __init__(self, stderr: bool = False, **options: Any) -> None:
        self.console = Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False,
                               **options)

    def print(self, *lines: str | Line, end: str = "\n") -> None:
        """Lines (plain strings or styled()), in one call: rich's cost is mostly per
        call, and a spec can have thousands of warnings, a plan thousands of actions."""
        segments: Line = []
        for i, line in enumerate(lines):
            if i:
                segments.append(Segment("\n"))
            segments += [Segment(safe(line))] if isinstance(line, str) else line
        self.console.print(Segments([*segments, Segment(end)]))  # (rich's end= is for str)

    def show(self, renderable: RenderableType) -> None:
        """A rich renderable, such as a table()."""
        self.console.print(renderable)

    def json(self, data: Any) -> None:
        """data as JSON, indented by 2, non-ASCII as is; highlighted on a terminal."""
        text = _UNSAFE.sub(_json_safe, json.dumps(data, indent=2, ensure_ascii=False))
        if self.console.is_terminal:
            self.console.print(JSONHighlighter()(text))
        else:
            self.console.print(Segments([Segment(text + "\n")]))


out = Out()
err = Out(stderr=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    """A rich Table of plain cells: text from the host is never read as markup."""
    from rich.table import Table

    t = Table(title=Text(safe(title)))
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*(Text(safe(cell)) for cell in row))
    return t


def print_problems(problems: list[Problem]) -> None:
    """FILE:LINE:COL: severity: message, on stderr."""
    if problems:
        err.print(*(styled((f"{p.file}:{p.line}:{p.col}" if p.line else p.file, "bold"),
                           ": ", (p.severity, "red" if p.severity == "error" else "yellow"),
                           f": {p.message}") for p in problems))


# -- plans (one host: cli.live; each host of many: cli.multihost) ----------------------

_IMPACT = {"live": "green", "restart": "yellow", "disruptive": "bold red", "host": "cyan"}
MARK = {"done": ("done", "green"), "skipped": ("skipped", "dim"),
        "failed": ("FAILED", "bold red")}


def _action_lines(a: Action) -> Iterator[Line]:
    style = "dim" if a.skipped else _IMPACT[a.impact]
    yield styled(f"  {a.sign} ", (f"[{a.marker}]", style), f" {a.kind} {a.target}: {a.summary}")
    for d in a.details:
        color = "green" if d.startswith("+") else "red" if d.startswith("-") else "yellow"
        yield styled("        ", (d, color))


def show_plan(plan: Plan, uri: str) -> None:
    """The plan's actions, each marked live / restart / disruptive, and a count."""
    if not plan.changes:
        skipped = len(plan.actions)
        out.print(f"No changes: {uri} matches the spec"
                  + (f" ({skipped} host action(s) skipped: {plan.actions[0].skipped})."
                     if skipped else "."))
        return
    out.print(styled((f"Plan for {uri}:", "bold")),
              *(line for a in plan.actions for line in _action_lines(a)))
    n = [a for a in plan.actions if not a.skipped]
    counts = {k: sum(1 for a in n if a.impact == k) for k in ("live", "restart", "disruptive")}
    skipped = len(plan.actions) - len(n)
    out.print(f"{len(n)} change(s): {counts['live']} live, {counts['restart']} with a network "
              f"restart, {counts['disruptive']} disruptive to running guests"
              + (f"; {skipped} skipped" if skipped else "") + ".")
