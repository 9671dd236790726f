"""kvmnet's command line: arguments in, one core call, output out.

Exit codes (stable, for scripts):
  0  success; with --detailed-exitcode: no changes
  1  an error: bad spec, bad usage, libvirt unreachable, unsafe plan, ...
  2  with --detailed-exitcode only: the plan has changes
"""

from __future__ import annotations

import copy
import gc
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kvmnet import __version__
from kvmnet.errors import KvmnetError, Problem, SpecError

try:  # typer >= 0.26 vendors click; older ones depend on it
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

_ABORT = tuple({typer.Abort, *[c for c in (getattr(click_exc, "Abort", None),) if c]})
_EXIT = tuple({typer.Exit, *[c for c in (getattr(click_exc, "Exit", None),) if c]})

app = typer.Typer(
    name="kvmnet",
    help=(
        "Declarative virtual networking for KVM hosts.\n\n"
        "Write one YAML file with your host bridges, libvirt networks (nat, route, open, "
        "isolated, bridge, macvtap) and guests' NICs; then:\n\n"
        "  kvmnet validate FILE     check it (errors as FILE:LINE:COL)\n\n"
        "  kvmnet plan FILE         show what would change\n\n"
        "  kvmnet apply FILE        make the host match it\n\n"
        "Connection: -c/--connect URI as in virsh; default $LIBVIRT_DEFAULT_URI, then "
        "qemu:///system. Use -c test:///default to try anything without touching a host."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_ESCAPE = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")  # a markup tag, and backslashes before it
_CONTROL = str.maketrans({c: None for c in (7, 8, 11, 12, 13)})  # BEL BS VT FF CR


def escape(text: str) -> str:
    """Make text print literally as rich markup: a '[' that would open a tag gets a
    backslash, and so do the backslashes before it (rich.markup.escape's rule)."""
    text = _ESCAPE.sub(lambda m: f"{m.group(1) * 2}\\{m.group(2)}", text)
    return text + "\\" if text.endswith("\\") and not text.endswith("\\\\") else text


def strip_control_codes(text: str) -> str:
    """Drop the control characters a terminal would act on (as rich does before output)."""
    return text.translate(_CONTROL)


class Out:
    """stdout or stderr. rich (~30 ms to import) is loaded only for what needs it: a
    terminal (colours, wrapping), tables and other rich objects. A pipe or a file gets
    the same characters written plainly: markup tags dropped, JSON indented by 2."""

    def __init__(self, stderr: bool = False, file: Any = None, **rich_options: Any) -> None:
        self._stderr = stderr
        self._file = file
        self._options = rich_options   # for rich's Console (tests: force_terminal=True)
        self._rich: Any = None

    @property
    def file(self) -> Any:
        if self._file is not None:
            return self._file
        return sys.stderr if self._stderr else sys.stdout

    @property
    def rich(self) -> Any:
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(file=self._file, stderr=self._stderr, highlight=False,
                                 soft_wrap=True, emoji=False, **self._options)
        return self._rich

    @property
    def is_terminal(self) -> bool:
        if self._rich is None and not self._options and not any(os.environ.get(v) for v in (
                "FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "JUPYTER_COLUMNS")):
            isatty = getattr(self.file, "isatty", None)
            return bool(isatty and isatty())
        return bool(self.rich.is_terminal)

    def print(self, *objects: Any, markup: bool = True, end: str = "\n", **kw: Any) -> None:
        if (self.is_terminal or not all(isinstance(o, str) for o in objects)
                or any("\t" in o for o in objects)):   # tabs: rich expands them by cell width
            self.rich.print(*objects, markup=markup, end=end, **kw)
            return
        text = " ".join(objects)
        if markup:
            text = _TAG.sub(_plain, text)
        self.file.write(strip_control_codes(text) + end)

    def print_json(self, text: str) -> None:
        if self.is_terminal:
            self.rich.print_json(text)
            return
        self.file.write(json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n")


out = Out()
err = Out(stderr=True)

SpecFile = Annotated[Path, typer.Argument(metavar="FILE", help="The kvmnet YAML spec.",
                                          show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable).")]


def _version(value: bool) -> None:
    if value:
        out.print(f"kvmnet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def print_problems(problems: list[Problem]) -> None:
    lines = []  # one print: rich's cost is mostly per call (thousands of warnings)
    for p in problems:
        style = "red" if p.severity == "error" else "yellow"
        loc = escape(f"{p.file}:{p.line}:{p.col}" if p.line else p.file)
        lines.append(f"[bold]{loc}[/bold]: [{style}]{p.severity}[/{style}]: "
                     f"{escape(p.message)}")
    if lines:
        print_markup(err, "\n".join(lines))


_TAG = re.compile(r"((\\*)\[([a-z#/@][^[]*?)])")  # rich.markup.RE_TAGS


def print_markup(console: Out, text: str) -> None:
    """console.print(text, markup=True): one call for many lines (rich's cost, when it is
    used, is mostly per call)."""
    console.print(text, markup=True, highlight=False)


def print_plain(console: Out, text: str) -> None:
    """console.print(text, markup=False, end="")."""
    console.print(text, markup=False, end="")


def _plain(m: re.Match[str]) -> str:
    backslashes, escaped = divmod(len(m.group(2)), 2)
    return "\\" * backslashes + (m.group(0)[len(m.group(2)):] if escaped else "")


def load_checked(path: Path, as_json: bool = False) -> Any:
    """Load + check a spec; print warnings; raise SpecError on errors (type errors and
    the semantic ones of the rest of the file together: spec.check.check_file)."""
    from kvmnet.spec.check import check_file, errors

    spec, _, problems = check_file(path)
    if errors(problems):
        raise SpecError(problems)
    if problems and not as_json:
        print_problems(problems)
    return spec, problems


@app.command()
def validate(file: SpecFile, as_json: JsonOpt = False) -> None:
    """Check a spec: syntax, types, and every semantic rule, all problems at once.

    Errors are printed as FILE:LINE:COL: error: what is wrong and what to write
    instead; exit 1 when there is any error. Warnings don't fail.
    """
    try:
        spec, problems = load_checked(file, as_json)
    except SpecError as e:
        if as_json:
            out.print_json(json.dumps({"ok": False, "problems": [p.as_dict() for p in
                                                                   e.problems]}))
            raise typer.Exit(1) from None
        raise
    if as_json:
        out.print_json(json.dumps({"ok": True, "problems": [p.as_dict() for p in problems]}))
        return
    counts = (f"{len(spec.networks)} network(s), {len(spec.guests)} guest(s), "
              f"{len(spec.host.bridges)} host bridge(s)")
    out.print(f"{file}: valid ({counts})")


@app.command()
def render(
    file: SpecFile,
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="DIR",
                                                help="Write the files under DIR "
                                                     "(layout: see README).")] = None,
) -> None:
    """Render every artefact: libvirt network XML, guest <interface> XML, host bridge
    configs (ifupdown, netplan, NetworkManager, systemd-networkd), upstream routes.

    Without -o the files are printed, each under a '==> PATH <==' header.
    """
    from kvmnet.render import render_all

    spec, _ = load_checked(file)
    files = render_all(spec)
    if output is None:
        for path in sorted(files):
            text = files[path]
            print_plain(out, f"==> {path} <==\n{text}" + ("" if text.endswith("\n") else "\n"))
        return
    from kvmnet.backend.files import write_tree

    write_tree(output, files)
    out.print(f"wrote {len(files)} files under {output}/")


@app.command()
def mac(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=65536,
                                       help="How many random MACs.")] = 1,
    for_: Annotated[str | None, typer.Option("--for", metavar="GUEST/INDEX",
                                             help="The stable MAC kvmnet gives NIC INDEX "
                                                  "(0-based) of GUEST.")] = None,
    spec_file: Annotated[Path | None, typer.Option("--spec", metavar="FILE",
                                                   help="Avoid the MACs this spec uses, and "
                                                        "resolve --for as apply would.")] = None,
) -> None:
    """Print MAC addresses for guests: random ones (52:54:00:xx:xx:xx, unicast, unique,
    never one the --spec uses) or the stable one kvmnet generates for GUEST/INDEX."""
    from secrets import token_bytes

    from kvmnet.model.derive import nic_macs, spec_macs, stable_mac

    spec = None
    if spec_file is not None:
        spec, _ = load_checked(spec_file)
    if for_ is not None:
        guest, sep, idx = for_.rpartition("/")
        if not sep or not guest or not idx.isdigit():
            raise typer.BadParameter("write GUEST/INDEX, e.g. web1/0", param_hint="--for")
        if spec is not None and (guest, int(idx)) in nic_macs(spec):
            out.print(nic_macs(spec)[(guest, int(idx))])
        else:
            out.print(stable_mac(guest, int(idx)))
        return
    used = spec_macs(spec) | set(nic_macs(spec).values()) if spec else set()
    made: list[str] = []
    while len(made) < count:
        b = token_bytes(3)
        m = f"52:54:00:{b[0]:02x}:{b[1]:02x}:{b[2]:02x}"
        if m not in used:
            used.add(m)
            made.append(m)
    out.print("\n".join(made))


def _register_live_commands() -> None:
    """Import the modules whose @app.command()s need libvirt, only when run as a CLI."""
    import importlib

    for mod in ("kvmnet.cli.live", "kvmnet.cli.diag", "kvmnet.cli.host"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # pragma: no cover - a module not written yet
            if e.name != mod:
                raise


def _app_for(args: list[str]) -> typer.Typer:
    """The app with just the command that runs: typer turns every registered command
    into a click command (inspecting each parameter) on every start, ~2 ms a command.
    The whole app when no command is named first (--help, --version, nothing) or the
    name is unknown, so help and "No such command" are the whole app's."""
    if not args or args[0].startswith("-"):
        return app
    name = args[0]
    mine = [c for c in app.registered_commands
            if (c.name or typer.main.get_command_name(getattr(c.callback, "__name__", ""))) == name]
    if not mine:
        return app
    one = copy.copy(app)
    one.registered_commands = mine
    one.registered_groups = []
    return one


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map every foreseen error to a message + exit code."""
    # One command per process, whose objects (YAML nodes, models, XML) hold no cycles:
    # the cyclic collector only walked the growing heap again and again (plan of 5000
    # networks: 16 s with it, 10 s without). Restored for callers in a longer process.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        if gc_was_on:
            gc.enable()


def _main(argv: list[str] | None) -> int:
    _register_live_commands()
    args = sys.argv[1:] if argv is None else argv
    try:
        rv = _app_for(args)(args=args, prog_name="kvmnet", standalone_mode=False)
    except SpecError as e:
        print_problems(e.problems)
        n = sum(1 for p in e.problems if p.severity == "error")
        err.print(f"{n} error(s); nothing was changed.")
        return 1
    except KvmnetError as e:
        err.print(f"kvmnet: error: {e}", markup=False)
        return 1
    except _ABORT:
        err.print("aborted; nothing was changed.")
        return 1
    except click_exc.ClickException as e:
        msg = e.format_message()
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `kvmnet`: the help, not an error
            out.print(msg, markup=False)
            return 0
        ctx = getattr(e, "ctx", None)
        usage = f"{ctx.get_usage()}\n" if ctx is not None else ""
        err.print(f"{usage}kvmnet: error: {msg}\nTry 'kvmnet --help'.", markup=False)
        return 1
    except _EXIT as e:
        return int(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        err.print("interrupted.")
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return int(rv or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
