"""kvmnet(1), the manual page, made from the CLI itself: every command's usage, help and
options as `--help` prints them, in man(7) roff. `kvmnet man` prints it; docs/kvmnet.1
is a copy a test keeps equal to it (install it as /usr/share/man/man1/kvmnet.1).

Written here rather than with click-man: typer carries its own copy of click, which
click-man does not know, and the page is ~80 lines of roff.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

SEE_ALSO = ("virsh(1)", "libvirtd(8)", "netplan(5)", "systemd.network(5)",
            "nm-settings-keyfile(5)", "interfaces(5)")


def esc(text: str) -> str:
    """Text as roff prints it: backslashes and hyphens spelled out, and no line that
    starts with a '.' or a "'" (roff would read it as a request)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def _paragraphs(text: str) -> Iterator[str]:
    """click's help text as roff paragraphs: blank lines part them, and a paragraph whose
    lines are indented is kept as written (an example)."""
    for block in re.split(r"\n\s*\n", inspect.cleandoc(text or "")):
        lines = block.split("\n")
        if all(line.startswith("  ") for line in lines):
            yield ".PP\n.nf\n.RS 4\n" + esc("\n".join(x.strip() for x in lines)) + "\n.RE\n.fi"
        else:
            yield ".PP\n" + esc(" ".join(x.strip() for x in lines))


def _option(p: Any) -> str:
    names = ", ".join(f"\\fB{esc(o)}\\fR" for o in p.opts)
    metavar = None if getattr(p, "is_flag", False) else p.metavar or p.name.upper()
    head = names + (f" \\fI{esc(metavar)}\\fR" if metavar else "")
    default = p.default if p.default not in (None, False, ()) and p.show_default is not False \
        else None
    text = (p.help or "") + (f" [default: {default}]" if default is not None and not
                             isinstance(default, bool) else "")
    return f".TP\n{head}\n{esc(text)}"


def _usage(name: str, cmd: Any) -> str:
    from typer.main import get_command

    from kvmnet.cli.main import app

    root = get_command(app)
    ctx = root.context_class(root, info_name="kvmnet")
    sub = cmd.context_class(cmd, info_name=name, parent=ctx)
    return " ".join(cmd.collect_usage_pieces(sub))


def render_man() -> str:
    """The whole page. Its header names no version or date: the copy in docs/ stays the
    same until the CLI changes (`kvmnet --version` tells the version)."""
    from kvmnet.cli import main

    root_help = main.app.info.help or ""
    lines = ['.TH KVMNET 1 "" "kvmnet" "kvmnet manual"',
             ".SH NAME", "kvmnet \\- declarative virtual networking for KVM hosts",
             ".SH SYNOPSIS", "\\fBkvmnet\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
             ".br", "\\fBkvmnet\\fR \\fB\\-\\-version\\fR | \\fB\\-h\\fR",
             ".SH DESCRIPTION", *_paragraphs(root_help), ".SH COMMANDS"]
    for name, module in main.COMMANDS.items():
        cmd = main._module_group(module).commands[name]
        lines += [f'.SS "kvmnet {esc(name)} {esc(_usage(name, cmd))}"',
                  *_paragraphs(cmd.help or "")]
        opts = [p for p in cmd.params
                if p.param_type_name == "option" and not getattr(p, "hidden", False)]
        lines += [_option(p) for p in opts]
    lines += [".SH EXIT STATUS", *_paragraphs(_exit_codes(main.__doc__ or "")),
              ".SH ENVIRONMENT", ".TP", "\\fBLIBVIRT_DEFAULT_URI\\fR",
              esc("The libvirt URI when no -c is given (then qemu:///system), as for virsh."),
              ".SH FILES", ".TP", "\\fI/run/kvmnet/\\fR",
              esc("Locks, and the journal of a host bridge change waiting for "
                  "`kvmnet confirm` (see kvmnet status)."),
              ".TP", "\\fI/var/backups/kvmnet/\\fR",
              esc("The host config files a host bridge change replaced."),
              ".SH SEE ALSO", esc(", ".join(SEE_ALSO))]
    return "\n".join(lines) + "\n"


def _exit_codes(doc: str) -> str:
    """The exit codes cli.main's docstring lists, one indented line each."""
    block = doc.split("Exit codes", 1)[-1].split("\n\n", 1)[0]
    return "\n".join("  " + x.strip() for x in block.splitlines()[1:] if x.strip())
