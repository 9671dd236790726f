"""Shell completion: `kvmnet completion bash|zsh|fish` prints the script (typer's own,
which calls kvmnet back with _KVMNET_COMPLETE set); commands and options complete from
the CLI, and these functions complete names: networks and guests from the spec named
on the line, or from the live connection (-c, else the default URI).

A completion must be quick and silent: every failure (no spec yet, a bad one, libvirt
unreachable) completes nothing rather than print an error into the user's prompt.
"""

from __future__ import annotations

import os
import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from kvmnet.cli import common
from kvmnet.cli.output import out

app = common.commands()


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command()
def completion(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the shell completion script: commands, options, and network and guest names
    (from the spec on the command line, or from libvirt at -c URI).

      bash:  kvmnet completion bash > /etc/bash_completion.d/kvmnet
      zsh:   kvmnet completion zsh > "${fpath[1]}/_kvmnet"
      fish:  kvmnet completion fish > ~/.config/fish/completions/kvmnet.fish
    """
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    completion_init()
    out.print(get_completion_script(prog_name="kvmnet", complete_var="_KVMNET_COMPLETE",
                                    shell=shell.value), end="\n")


def _given(ctx: Any, key: str) -> Any:
    """What the command line says so far for a parameter: click's parse of it, or, when
    that gave up (typer's click drops every value while an option before the cursor
    still waits for its own: `plan FILE --adopt <TAB>`), the words the shell sent."""
    if ctx.params.get(key) is not None:
        return ctx.params[key]
    words = shlex.split(os.environ.get("COMP_WORDS")                 # bash
                        or os.environ.get("_TYPER_COMPLETE_ARGS", ""))  # zsh, fish
    params = {p.name: p for p in ctx.command.params}
    valued = {o for p in params.values() if p.param_type_name == "option"
              and not getattr(p, "is_flag", False) for o in p.opts}
    if key in params and params[key].param_type_name == "option":
        names = set(params[key].opts)
        return next((b for a, b in zip(words, words[1:], strict=False) if a in names), None)
    rest = words[words.index(ctx.info_name) + 1:] if ctx.info_name in words else []
    positional = [w for i, w in enumerate(rest)
                  if not w.startswith("-") and not (i and rest[i - 1] in valued)]
    return positional[0] if positional and key in params else None


def _spec(ctx: Any, *keys: str) -> Any:
    """The spec the command line names so far (its FILE or --spec), or None."""
    from kvmnet.spec.load import load_partial

    for key in keys:
        path = _given(ctx, key)
        if path is not None and str(path) != "-" and os.path.exists(path):
            return load_partial(Path(path)).spec
    return None


def _live_networks(ctx: Any) -> list[str]:
    from kvmnet.backend.libvirt import connect

    with connect(_given(ctx, "connect_")) as conn:
        return sorted(n.name() for n in conn.raw.listAllNetworks())


def _match(names: list[str], incomplete: str) -> list[str]:
    return [n for n in dict.fromkeys(names) if n.startswith(incomplete)]


def networks(ctx: Any, incomplete: str) -> list[str]:
    """Network names: the spec's (plan, apply --adopt), else live ones (leases, import)."""
    try:
        spec = _spec(ctx, "file")
        names = list(spec.networks) if spec is not None else []
        return _match(names or _live_networks(ctx), incomplete)
    except Exception:  # noqa: BLE001 - a completion says nothing rather than fail
        return []


def guest_nics(ctx: Any, incomplete: str) -> list[str]:
    """GUEST/INDEX of every NIC of the --spec's guests (kvmnet mac --for)."""
    try:
        spec = _spec(ctx, "spec_file")
        if spec is None:
            return []
        return _match([f"{g}/{i}" for g, guest in spec.guests.items()
                       for i in range(len(guest.interfaces))], incomplete)
    except Exception:  # noqa: BLE001
        return []


def hosts(ctx: Any, incomplete: str) -> list[str]:
    """The spec's hosts: (plan, apply --host)."""
    try:
        spec = _spec(ctx, "file")
        return _match(list(spec.hosts) if spec is not None else [], incomplete)
    except Exception:  # noqa: BLE001
        return []
