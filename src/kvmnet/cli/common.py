"""What the command modules share: their Typer, the options several commands take, and
loading a spec file the way every command does (warnings printed, errors raised)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmnet.cli.output import print_problems
from kvmnet.errors import SpecError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from kvmnet.backend.libvirt import Connection
    from kvmnet.errors import Problem
    from kvmnet.model.spec import Spec


def commands() -> typer.Typer:
    """A module's Typer of commands, which cli.main's group loads when one of them runs.
    Help is click's plain text (no rich panels), as the root's; an unforeseen error
    gets Python's own traceback (typer's pretty one prints local variables)."""
    return typer.Typer(rich_markup_mode=None, add_completion=False,
                       pretty_exceptions_enable=False)


SpecFile = Annotated[Path, typer.Argument(metavar="FILE", help="The kvmnet YAML spec.",
                                          show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable).")]
ConnectOpt = Annotated[str | None, typer.Option(
    "-c", "--connect", metavar="URI",
    help="libvirt URI as in virsh (default: $LIBVIRT_DEFAULT_URI, then qemu:///system).")]


def connect(uri: str | None, needed: bool = True) -> AbstractContextManager[Connection]:
    """libvirt's connection to uri (kvmnet.backend.libvirt; imported when a command runs)."""
    from kvmnet.backend.libvirt import connect as _connect

    return _connect(uri, needed)


def load_checked(path: Path, as_json: bool = False) -> tuple[Spec, list[Problem]]:
    """Load + check a spec; print warnings (not with --json); raise SpecError on errors
    (type errors and the semantic ones of the rest of the file together:
    spec.check.check_file)."""
    from kvmnet.spec.check import check_file, errors

    spec, _, problems = check_file(path)
    if errors(problems):
        raise SpecError(problems)
    if problems and not as_json:
        print_problems(problems)
    return spec, problems
