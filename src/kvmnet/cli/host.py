"""CLI commands for a host network change waiting for confirm: confirm, rollback.

`kvmnet apply` moves a NIC into a bridge and leaves a watchdog behind that
rolls the change back unless `kvmnet confirm` comes in time (see
kvmnet.apply.bridge.transaction), and a boot unit that runs `kvmnet rollback --boot` in
case the host reboots first (kvmnet.apply.bridge.boot). Neither command needs
libvirt.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmnet.cli.common import JsonOpt, commands
from kvmnet.cli.output import out

if TYPE_CHECKING:
    from kvmnet.apply.bridge.journal import Outcome

app = commands()

RootOpt = Annotated[Path, typer.Option(
    "--root", metavar="DIR", help="The --root the apply was given (default /).")]


def _print(outcome: Outcome, as_json: bool, text: str) -> None:
    from kvmnet.apply.bridge.journal import report

    if as_json:
        out.json({"kvmnet": 1, **report(outcome)})
    else:
        out.print(text)


@app.command()
def confirm(root: RootOpt = Path("/"), as_json: JsonOpt = False) -> None:
    """Keep the host network change the last apply made: stops its rollback watchdog.

    Run it from a new connection to the host: that it works is the proof.
    """
    from kvmnet.apply.bridge.transaction import confirm as do_confirm

    last = do_confirm(root)
    bridges = ", ".join(last.bridges or ()) or "-"
    _print(last, as_json, f"Confirmed: host bridge change ({bridges}) kept; the watchdog "
                          "is stopped.")


@app.command()
def rollback(root: RootOpt = Path("/"), as_json: JsonOpt = False,
             boot: Annotated[bool, typer.Option(
                 "--boot", help="Run at boot (kvmnet-boot-rollback.service): undo a change "
                                "the host rebooted in before it was confirmed; does nothing "
                                "(exit 0) when there is none or no reboot happened.")] = False
             ) -> None:
    """Undo the host network change waiting for confirm, now: links, addresses, routes
    and config files go back to what they were before the apply."""
    from kvmnet.apply.bridge.journal import describe
    from kvmnet.apply.bridge.store import last_outcome
    from kvmnet.apply.bridge.transaction import rollback as do_rollback
    from kvmnet.errors import LiveError

    if boot:
        from kvmnet.apply.bridge.boot import boot_rollback

        res = boot_rollback(root)
        if res.outcome == "nothing to do":
            _print(res, as_json, f"Nothing to roll back at boot: {res.reason}.")
            return
        bridges = ", ".join(res.bridges or ()) or "-"
        _print(res, as_json, f"Rolled back ({bridges}) at boot, {res.reason}, in "
                             f"{res.seconds or 0:.2f} s: " + "; ".join(res.done or ()))
        return
    last = do_rollback(root, "kvmnet rollback")
    if last is None:
        raise LiveError(f"nothing to roll back: {describe(last_outcome(root))}")
    bridges = ", ".join(last.bridges or ()) or "-"
    _print(last, as_json, f"Rolled back ({bridges}) in {last.seconds or 0:.2f} s: "
                          + "; ".join(last.done or ()))
