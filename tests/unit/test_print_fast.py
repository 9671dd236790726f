"""cli.print_markup / print_plain write what rich's Console.print would, character for
character, when the output is not a terminal (issue 8: a big plan's 17,000 lines took
1.4 s through rich one call each)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.markup import escape

from kvmnet.cli.main import Out, print_markup, print_plain
from kvmnet.cli.main import escape as own_escape
from kvmnet.render import render_all
from kvmnet.spec.load import load_text

TRICKY = ["a [b] c", "x\\[y]", "[bold]k[/bold]: " + escape("v[red]w\\"), "\\\\[bold]z[/bold]",
          "control\x07\x0b\r codes", escape("[/x] \\ [y]"), "[yellow]warning[/yellow]: é ü ✓",
          "  + [green]\\[live][/green] network.create " + escape("network/a[b]") + ": x"]


def _console(buf: io.StringIO) -> Console:
    return Console(file=buf, highlight=False, soft_wrap=True, emoji=False)


def test_markup_as_rich_prints_it() -> None:
    text = "\n".join(TRICKY)
    rich_out, fast = io.StringIO(), io.StringIO()
    _console(rich_out).print(text, markup=True, highlight=False)
    print_markup(Out(file=fast), text)
    assert fast.getvalue() == rich_out.getvalue()


def test_escape_as_rich_escapes() -> None:
    for s in [*TRICKY, "a\\", "a\\\\", "\\[b]", "[not a tag", "x[/]y", "[@click]", "[#fff]"]:
        assert own_escape(s) == escape(s), s


def test_json_as_rich_prints_it() -> None:
    doc = '{"ok": true, "problems": [{"file": "é.yaml", "line": 3, "msg": "[bold]x"}], "n": {}}'
    rich_out, fast = io.StringIO(), io.StringIO()
    _console(rich_out).print_json(doc)
    Out(file=fast).print_json(doc)
    assert fast.getvalue() == rich_out.getvalue()


def test_plain_as_rich_prints_it() -> None:
    spec, _ = load_text("networks:\n  n1: {mode: nat, bridge: vb1, ipv4: {address: "
                        "10.9.0.1/24, dhcp: 10.9.0.2-10.9.0.9}}\nguests:\n  g: {interfaces: "
                        "[{network: n1, ipv4: 10.9.0.20}]}\n")
    rich_out, fast = io.StringIO(), io.StringIO()
    for path, text in sorted(render_all(spec).items()):
        _console(rich_out).print(f"==> {path} <==", markup=False)
        _console(rich_out).print(text, markup=False, end="" if text.endswith("\n") else "\n")
        print_plain(Out(file=fast), f"==> {path} <==\n{text}"
                    + ("" if text.endswith("\n") else "\n"))
    assert fast.getvalue() == rich_out.getvalue()


def test_a_terminal_still_gets_rich() -> None:
    buf = io.StringIO()
    tty = Out(file=buf, force_terminal=True, color_system="standard")
    print_markup(tty, "[red]x[/red]")
    assert "\x1b[" in buf.getvalue()
