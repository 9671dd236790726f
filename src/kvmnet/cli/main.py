"""kvmnet's command line: arguments in, one core call, output out.

Exit codes (stable, for scripts):
  0  success; with --detailed-exitcode: no changes
  1  an error: bad spec, bad usage, libvirt unreachable, unsafe plan, ...
  2  with --detailed-exitcode only: the plan has changes
  3  plan: apply would refuse this plan without --allow-destroy (a network with guests
     attached would be removed); `plan --allow-destroy` plans as that apply would
  130  interrupted (Ctrl-C)

The commands live in modules by what they need (cli.local: the spec file only;
cli.live: libvirt; cli.diag; cli.host), each a Typer of its own. The root group loads
only the module of the command that runs (click's lazy subcommands, on typer's
TyperGroup): `kvmnet validate` never imports libvirt, and typer turns only that
module's functions into click commands.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from difflib import get_close_matches
from functools import cache
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from kvmnet.cli.output import err, out, print_problems, styled
from kvmnet.errors import KvmnetError, SpecError

# Each command's module, in the order --help lists them.
COMMANDS = {
    "validate": "kvmnet.cli.local", "render": "kvmnet.cli.local", "mac": "kvmnet.cli.local",
    "schema": "kvmnet.cli.local", "man": "kvmnet.cli.local",
    "plan": "kvmnet.cli.live", "apply": "kvmnet.cli.live", "import": "kvmnet.cli.live",
    "destroy": "kvmnet.cli.teardown",
    "show": "kvmnet.cli.show", "leases": "kvmnet.cli.show", "demo": "kvmnet.cli.live",
    "graph": "kvmnet.cli.diag", "doctor": "kvmnet.cli.diag", "serve": "kvmnet.cli.serve",
    "status": "kvmnet.cli.host", "confirm": "kvmnet.cli.host", "rollback": "kvmnet.cli.host",
    "completion": "kvmnet.cli.complete", "server": "kvmnet.cli.server",
}


@cache
def _module_group(module: str) -> TyperGroup:
    """The click group of one command module's Typer (built once a process)."""
    return typer.main.get_group(importlib.import_module(module).app)


class LazyGroup(TyperGroup):
    """kvmnet's root: a command's module is imported when that command is asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = COMMANDS.get(cmd_name)
        return None if module is None else _module_group(module).get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """typer's, with its "Did you mean" drawn from every command, not only the loaded."""
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as e:
            close = get_close_matches(args[0], COMMANDS) if args else []
            if close and args[0] not in COMMANDS:
                e.message = (f"{e.message.rstrip('.')}. "
                             f"Did you mean {', '.join(map(repr, close))}?")
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # (typer would make it a silent exit 130)
            err.print("interrupted.")
            raise typer.Exit(130) from None


app = typer.Typer(
    name="kvmnet",
    cls=LazyGroup,
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
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        out.print(*versions())
        raise typer.Exit()


def versions() -> list[str]:
    """kvmnet's version, libvirt's (the library libvirt-python runs on: the daemon a -c URI
    reaches may be another) and libvirt-python's, one a line: what a bug report needs."""
    from importlib.metadata import PackageNotFoundError, version

    from kvmnet import __version__

    lines = [f"kvmnet {__version__}"]
    try:
        import libvirt
    except ImportError:
        return [*lines, "libvirt-python not installed (apt-get install python3-libvirt, "
                        "or pip install libvirt-python)"]
    n = libvirt.getVersion()
    lines.append(f"libvirt {n // 1_000_000}.{n // 1000 % 1000}.{n % 1000} (library)")
    try:
        lines.append(f"libvirt-python {version('libvirt-python')}")
    except PackageNotFoundError:  # (a distribution's python3-libvirt has no metadata)
        lines.append(f"libvirt-python {getattr(libvirt, '__version__', 'unknown')}")
    return lines


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the versions of kvmnet, libvirt and "
                                               "libvirt-python, and exit.")] = False,
) -> None:
    pass


def _problem(message: str) -> dict[str, Any]:
    """An error that is not about a place in the spec, as --json's problems carry it."""
    from kvmnet.errors import split_message

    return {"file": None, "line": 0, "col": 0, "severity": "error", "message": message,
            "path": None, "hint": split_message(message)[1]}


def failed_json(args: list[str], problems: list[dict[str, Any]]) -> bool:
    """With --json (given to a command that has it), a failure is a JSON object on
    stdout too, `{"kvmnet": 1, "ok": false, "problems": [...]}`, so that a script reads
    one document whatever happened. False when the text goes to stderr instead."""
    words = args[:args.index("--")] if "--" in args else args
    as_json = {"--json", "-ojson", "--output=json"} & set(words) or any(
        a in ("-o", "--output") and b == "json" for a, b in zip(words, words[1:], strict=False))
    if not as_json:
        return False
    name = next((a for a in words if a in COMMANDS), None)
    command = _module_group(COMMANDS[name]).commands.get(name) if name else None
    if command is None or not any("--json" in p.opts for p in command.params):
        return False
    out.json({"kvmnet": 1, "ok": False, "problems": problems})
    return True


def run() -> NoReturn:
    """The `kvmnet` command (console script, `python -m kvmnet`): main() in a process of
    its own, which then exits the usual way (atexit handlers, threads, flushes). Before
    it does, gc.freeze(): the exit's collection would walk every object the command
    made, none of them garbage worth finding; measured (CPU, 31 interleaved runs):
    `validate` of a small file 0.30 -> 0.25 s, `plan` 0.37 -> 0.30 s, `--help`
    0.17 -> 0.14 s.

    pydantic looks for plugins (the `pydantic` entry-point group of every installed
    distribution) before it builds the first model; kvmnet's models use none, so the
    command sets pydantic's documented PYDANTIC_DISABLE_PLUGINS unless the environment
    sets it (empty: plugins load): 1.3% of a no-op apply's instructions with the 49
    distributions of kvmnet's venv, more on a host with many (typer does the same for
    its own option adapters)."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    rc = main()
    gc.freeze()
    sys.exit(rc)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every foreseen error becomes a message and an exit code."""
    # The command's objects (YAML nodes, models, XML) hold no cycles, and the cyclic
    # collector walked the growing heap again and again: validate of 1000 networks +
    # 10000 NICs 2.05 -> 1.27 s of CPU without it, plan 3.87 -> 2.35 s (7 interleaved
    # runs). Restored for callers in a longer process (tests).
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _main(argv)
    finally:
        if gc_was_on:
            gc.enable()


def _main(argv: list[str] | None) -> int:
    """Bare `kvmnet` prints the help (exit 0)."""
    args = sys.argv[1:] if argv is None else argv
    if "_KVMNET_COMPLETE" in os.environ:  # the shell asks for completions (cli.complete)
        from typer._completion_classes import completion_init

        completion_init()
    try:
        rv = app(args=args or ["--help"], prog_name="kvmnet", standalone_mode=False)
    except SpecError as e:
        if not failed_json(args, [p.as_dict() for p in e.problems]):
            print_problems(e.problems)
            n = sum(1 for p in e.problems if p.severity == "error")
            err.print(f"{n} error(s); nothing was changed.")
        return 1
    except KvmnetError as e:
        if not failed_json(args, [_problem(str(e))]):
            err.print(styled(f"kvmnet: error: {e}"))  # one line: it may name live things
        return 1
    except typer.Abort:
        if not failed_json(args, [_problem("aborted; nothing was changed")]):
            err.print("aborted; nothing was changed.")
        return 1
    except typer.TyperException as e:  # click's usage errors: the usage line, the error
        if failed_json(args, [_problem(e.format_message())]):
            return 1
        ctx = getattr(e, "ctx", None)
        usage = f"{ctx.get_usage()}\n" if ctx is not None else ""
        err.print(f"{usage}kvmnet: error: {e.format_message()}\nTry 'kvmnet --help'.")
        return 1
    except BrokenPipeError:  # `kvmnet ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return int(rv or 0)
