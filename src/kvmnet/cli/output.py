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

rich is imported when something is first printed through it (its import is ~6% of a
no-op `apply --json`, the command scripts run most): `--json` to a pipe or a file is
json.dumps's text written as it is, which is what rich writes there too; a terminal
gets it highlighted by rich.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # rich loads when something is printed through it
    from rich.console import Console, RenderableType
    from rich.segment import Segment

    from kvmnet.errors import Problem
    from kvmnet.plan import Action, Plan

    Line = list[Segment]

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


def one_line(text: str, tab: bool = False) -> str:
    """safe(text) on one line: a line break (and, unless `tab`, a tab) shown as \\n
    (\\t). For what is one line or one cell by nature, such as a name from libvirt in a
    plan line or a guest's hostname in a table: a line break there would forge a row."""
    text = safe(text).replace("\n", "\\n")
    return text if tab else text.replace("\t", "\\t")


def cell(text: str) -> str:
    """A cell of a plain table (a pipe or a file): one_line(text), with whitespace at its
    start or end spelled \\x20 (\\u00a0, ...) and an empty cell as "", so that a name's
    leading or trailing space is not lost in the column's padding and no column is left
    empty for awk. Spaces inside stay (an expiry is `2026-12-07 05:20:11 (in 43m)`)."""
    text = one_line(text)
    if not text:
        return '""'
    m = _EDGES.fullmatch(text)
    assert m is not None  # (the pattern matches any text)
    return _spell(m.group(1)) + m.group(2) + _spell(m.group(3))


def _spell(spaces: str) -> str:
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in spaces)


_EDGES = re.compile(r"(\s*)(.*?)(\s*)", re.DOTALL)


def _json_safe(m: re.Match[str]) -> str:
    return f"\\u{ord(m.group()):04x}"   # the same character, spelled as JSON allows


Part = str | tuple[str, str]


def styled(*parts: Part) -> Line:
    """One line from plain strings and (string, style) pairs, each string made safe and
    kept on the line (one_line: a line break or tab in a name shows as \\n, \\t)."""
    from rich.segment import Segment
    from rich.style import Style

    return [Segment(one_line(p)) if isinstance(p, str)
            else Segment(one_line(p[0]), Style.parse(p[1])) for p in parts]


class Out:
    """stdout or stderr: a rich Console, written to as the module says. `options` go
    to the Console (tests: force_terminal=True, file=...)."""

    def __init__(self, stderr: bool = False, **options: Any) -> None:
        self.stderr, self.options = stderr, options

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        return Console(stderr=self.stderr, highlight=False, soft_wrap=True, emoji=False,
                       **self.options)

    def print(self, *lines: str | Line, end: str = "\n") -> None:
        """Lines (plain strings or styled()), in one call: rich's cost is mostly per
        call, and a spec can have thousands of warnings, a plan thousands of actions."""
        from rich.segment import Segment, Segments

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
        stream = self._plain_stream()
        if stream is not None:  # a pipe or a file: the text as it is, without rich
            stream.write(text + "\n")
            stream.flush()
            return
        if self.console.is_terminal:
            from rich.highlighter import JSONHighlighter

            self.console.print(JSONHighlighter()(text))
        else:
            self.console.print(_plain(text + "\n"))

    def _plain_stream(self) -> TextIO | None:
        """The standard stream this writes to when it is no terminal (and no Console
        options were given, as tests do), else None."""
        if self.options:
            return None
        stream = sys.stderr if self.stderr else sys.stdout
        try:
            return None if stream.isatty() else stream
        except ValueError:  # closed
            return None


def _plain(text: str) -> RenderableType:
    """text for rich to write as it is."""
    from rich.segment import Segment, Segments

    return Segments([Segment(text)])


out = Out()
err = Out(stderr=True)


@dataclass(frozen=True)
class Column:
    """A table's column; `wide`: shown only with -o wide (as kubectl's and virsh's extra
    columns)."""

    name: str
    wide: bool = False


@dataclass(frozen=True)
class TableView:
    """How `show` and `leases` print tables: -o wide adds columns, --no-headers drops the
    header row (and the title)."""

    wide: bool = False
    headers: bool = True


DEFAULT_VIEW = TableView()


def print_table(title: str, columns: Sequence[Column], rows: Iterable[Sequence[str]],
                view: TableView = DEFAULT_VIEW) -> None:
    """A table on stdout, every cell whole (never cut short, never wrapped). On a terminal
    a rich table with a title, as wide as its cells need (the terminal may fold the
    lines, the text stays whole); into a pipe or a file plain columns of spaces, headers
    in capitals and no title or box characters, for awk, cut and sort."""
    keep = [i for i, c in enumerate(columns) if view.wide or not c.wide]
    names = [columns[i].name for i in keep]
    if out.console.is_terminal:
        _rich_table(title, names, [[one_line(row[i]) for i in keep] for row in rows],
                    view.headers)
        return
    cells = [[cell(row[i]) for i in keep] for row in rows]  # a row per row, a field a cell
    lines = ([[n.upper() for n in names]] if view.headers else []) + cells
    widths = [max((len(line[i]) for line in lines), default=0) for i in range(len(names))]
    text = "\n".join("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
                     .rstrip() for line in lines)
    out.console.print(_plain(text + "\n" if text else ""))


def _rich_table(title: str, names: Sequence[str], cells: Sequence[Sequence[str]],
                headers: bool) -> None:
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(one_line(title)) if headers else None, show_header=headers)
    for name in names:
        t.add_column(name, no_wrap=True)
    for row in cells:
        t.add_row(*(Text(cell) for cell in row))
    console = out.console
    need = Measurement.get(console, console.options.update_width(1 << 20), t).maximum
    width = console.width
    console.width = max(width, need)  # (rich cuts a table to the terminal's width)
    try:
        console.print(t, crop=False)
    finally:
        console.width = width


def when(epoch: float | None, now: float) -> str:
    """A lease's expiry as the local time and how far off it is: '2026-12-07 05:20:11
    (in 43m)', '... (2m ago)'; '-' for none (a lease that never expires)."""
    if not epoch:
        return "-"
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    left = epoch - now
    return f"{at} ({'in ' if left >= 0 else ''}{span(left)}{'' if left >= 0 else ' ago'})"


def span(seconds: float) -> str:
    """A length of time as people say it, two units at most, seconds only under ten
    minutes: 3d4h, 2h5m, 43m, 1m43s, 20s."""
    s = abs(int(seconds))
    units = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m")]
    if s < 600:
        units.append((s % 60, "s"))
    first = next((i for i, (n, _) in enumerate(units) if n), len(units) - 1)
    return "".join(f"{n}{u}" for n, u in units[first:first + 2] if n) or "0s"


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
    gate = [(" [needs --allow-destroy]", "bold red")] if a.needs_allow_destroy else []
    yield styled(f"  {a.sign} ", (f"[{a.marker}]", style), *gate,
                 f" {a.kind} {a.target}: {a.summary}")
    for d in a.details:
        color = "green" if d.startswith("+") else "red" if d.startswith("-") else "yellow"
        yield styled("        ", (d, color))


def _left_alone(plan: Plan) -> list[str | Line]:
    if not plan.left_alone:
        return []
    return [styled(("Left alone (not this spec's owner's):", "bold")),
            *(styled("  = ", (x.text(), "dim")) for x in plan.left_alone)]


def show_plan(plan: Plan, uri: str, nothing: str | None = None) -> None:
    """The plan's actions, each marked live / restart / disruptive, and a count; what
    other owners hold is listed as left alone. `nothing`: what to say instead of "URI
    matches the spec" when there are no changes (libvirt not read, destroy)."""
    if plan.left_alone:
        out.print(*_left_alone(plan))
    if not plan.changes:
        skipped = len(plan.actions)
        out.print((nothing or f"No changes: {uri} matches the spec")
                  + (f" ({skipped} host action(s) skipped: {plan.actions[0].skipped})."
                     if skipped else "."))
        return
    out.print(styled((f"Plan for {uri}:", "bold")),
              *(line for a in plan.actions for line in _action_lines(a)))
    out.print(summary_line(plan))
    gated = [a.target for a in plan.actions if a.needs_allow_destroy and not a.skipped]
    if gated:
        out.print(styled((f"{', '.join(gated)}: guests are attached, so apply refuses "
                          "without --allow-destroy.", "bold red")))


def summary_line(plan: Plan) -> str:
    """terraform's `N to add, M to change, K to destroy`, then kvmnet's impacts."""
    c = plan.counts()
    return (f"Plan: {c['add']} to add, {c['change']} to change, {c['destroy']} to destroy "
            f"({c['live']} live, {c['restart']} with a network restart, {c['disruptive']} "
            "disruptive to running guests"
            + (f"; {c['skipped']} skipped" if c["skipped"] else "") + ").")
