"""cli.output: rich prints; a pipe gets plain text, a terminal colours; text from specs
and from the host can neither forge markup nor reach the terminal as escape sequences."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kvmnet.cli.output import Out, print_problems, safe, styled
from kvmnet.cli.show import show_tables
from kvmnet.errors import Problem

HOSTILE = ["\x1b[2J\x1b[H", "\x1b]0;owned\x07", "net\x9b31mred", "a\rb", "x\x00y",
           "\u202egnp.exe", "a\u2028b", "\x7f"]
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def pipe() -> tuple[Out, io.StringIO]:
    buf = io.StringIO()
    return Out(file=buf), buf


def terminal() -> tuple[Out, io.StringIO]:
    buf = io.StringIO()
    return Out(file=buf, force_terminal=True, color_system="standard", width=200), buf


def test_a_pipe_gets_plain_text() -> None:
    o, buf = pipe()
    o.print(styled(("FAILED", "bold red"), ": x"))
    assert buf.getvalue() == "FAILED: x\n"


def test_a_terminal_gets_colour() -> None:
    o, buf = terminal()
    o.print(styled(("x", "red")))
    assert "\x1b[31m" in buf.getvalue()


def test_long_lines_are_not_wrapped_in_a_pipe() -> None:
    o, buf = pipe()
    o.print("word " * 100)
    assert buf.getvalue() == "word " * 100 + "\n"


def test_lines_and_tabs_arrive_as_written() -> None:
    """render prints files: tabs stay tabs (rich's Text would expand them), and many
    lines in one call come out in order, each ended once. A styled() line is one line:
    a tab or line break in it (a name from libvirt) is shown as \\t, \\n."""
    o, buf = pipe()
    o.print("a\tb", styled(("c", "red"), "\td\ne"), "", end="")
    o.print("last")
    assert buf.getvalue() == "a\tb\nc\\td\\ne\nlast\n"   # ("" then end="": nothing)


def test_text_is_never_markup() -> None:
    o, buf = pipe()
    o.print("/tmp/[bold]x[/bold].yaml: valid")
    assert buf.getvalue() == "/tmp/[bold]x[/bold].yaml: valid\n"


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
@pytest.mark.parametrize("make", [pipe, terminal], ids=["pipe", "terminal"])
def test_control_characters_are_shown_not_sent(make: object, value: str) -> None:
    o, buf = make()  # type: ignore[operator]
    o.print(f"network {value} gone")
    o.print(styled((value, "bold"), " ", value))
    text = re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())  # the terminal's own colours
    assert not RAW.search(text), repr(text)
    assert text.splitlines()[0] == f"network {safe(value)} gone"
    assert text.splitlines()[-1] == f"{safe(value)} {safe(value)}"
    assert "\\x" in text or "\\u" in text


def test_safe_leaves_ordinary_text_alone() -> None:
    for s in ["plain", "tab\there", "two\nlines", "é ü ✓ 网络", "[bold]x[/bold]", "a\\b"]:
        assert safe(s) == s


@pytest.mark.parametrize("make", [pipe, terminal], ids=["pipe", "terminal"])
def test_json_is_json_and_safe(make: object) -> None:
    """The same values (non-ASCII as is), 2-space indent; a C1 control such as CSI is
    written as \\u009b, which JSON reads back as the same character."""
    o, buf = make()  # type: ignore[operator]
    data = {"ok": True, "name": "é\x9b2J\x1b", "nested": {"list": [1, "[bold]x"]}, "n": {}}
    o.json(data)
    text = re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())
    assert json.loads(text) == data
    assert not RAW.search(text)
    if make is pipe:
        want = json.dumps(data, indent=2, ensure_ascii=False).replace("\x9b", "\\u009b")
        assert text == want + "\n"


def test_problems_keep_their_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    print_problems([Problem("f[red].yaml", 3, 4, "write [bold]x[/bold] \\[y]\\", "error")])
    assert capsys.readouterr().err == "f[red].yaml:3:4: error: write [bold]x[/bold] \\[y]\\\n"


def test_a_hostile_live_network_name_in_show(capsys: pytest.CaptureFixture[str]) -> None:
    """show's tables hold names from libvirt: a name is a cell, never markup or escapes."""
    name = "[bold]n\x1b[2J"
    show_tables({"uri": "test:///x", "forwards": [], "interfaces": [],
                 "networks": [{"name": name, "mode": "nat", "bridge": None, "subnets": [],
                               "active": True, "autostart": False, "owner": "unmanaged"}]})
    out = capsys.readouterr().out
    assert "[bold]n\\x1b[2J" in out and not RAW.search(out)


def test_json_to_a_pipe_is_what_rich_writes_there(capsys: pytest.CaptureFixture[str]) -> None:
    """The default `out` writes --json to a pipe without rich: the same characters as
    rich's Console writes to a file (and the same safe escapes)."""
    from kvmnet.cli.output import out

    data = {"ok": True, "name": "é\x9b2J\x1b\u202e", "nested": {"list": [1, "[bold]x"]}}
    o, buf = pipe()
    o.json(data)
    out.json(data)
    assert capsys.readouterr().out == buf.getvalue()


def test_apply_json_to_a_pipe_loads_no_rich(tmp_path: Path) -> None:
    """A no-op `apply --json` (what scripts and the bench run) prints through no rich:
    its import was ~7% of the command's instructions."""
    spec = tmp_path / "s.yaml"
    spec.write_text("networks: {}\n")
    code = ("import sys; from kvmnet.cli.main import main; rc = main(sys.argv[1:]); "
            "print('rich' in sys.modules, rc)")
    r = subprocess.run([sys.executable, "-c", code, "apply", str(spec), "-c",
                        "test:///default", "--yes", "--json"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    *doc, last = r.stdout.splitlines()
    assert json.loads("\n".join(doc))["writes"] == 0
    assert last == "False 0"
