"""CLI commands for a host network change waiting for confirm: status, confirm, rollback.

`kvmnet apply` moves a NIC into a bridge and leaves a watchdog behind that
rolls the change back unless `kvmnet confirm` comes in time (see
kvmnet.apply.bridge.transaction), and a boot unit that runs `kvmnet rollback --boot` in
case the host reboots first (kvmnet.apply.bridge.boot). Neither command needs
libvirt.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmnet.cli.common import JsonOpt, commands
from kvmnet.cli.output import out, span, when

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


def _left(deadline: float) -> float:
    """Seconds until a journal's deadline (time.monotonic(), the clock of one boot)."""
    return deadline - time.monotonic()


@app.command()
def status(root: RootOpt = Path("/"), as_json: JsonOpt = False) -> None:
    """Is a host network change waiting for confirm? Its bridges, when the watchdog rolls
    it back (a time and a countdown), the watchdog's pid and the journal's path; else
    how the last one ended. Reads only; exit 0 either way."""
    from kvmnet.apply.bridge.journal import describe, report
    from kvmnet.apply.bridge.store import (
        journal_path,
        last_outcome,
        pending,
        persisted_path,
        registered,
    )
    from kvmnet.apply.bridge.watchdog import alive

    found, last = pending(root), last_outcome(root)
    if found is None:
        if as_json:
            out.json({"kvmnet": 1, "pending": None, "last": report(last) if last else None})
        else:
            out.print(f"No host network change is waiting for confirm ({describe(last)}).")
        return
    j = found.journal
    w = registered(root)
    running = bool(w and alive(root, j.txid))
    path = persisted_path(root) if found.from_disk else journal_path(root)
    left = _left(j.deadline)
    if as_json:
        out.json({"kvmnet": 1, "pending": {
            "txid": j.txid, "state": j.state, "bridges": [s.bridge for s in j.steps],
            "created": j.created, "timeout": j.timeout, "deadline": time.time() + left,
            "seconds_left": max(left, 0.0), "watchdog_pid": w.pid if w else None,
            "watchdog_running": running, "journal": str(path),
            "after_reboot": found.from_disk}, "last": report(last) if last else None})
        return
    arg = "" if Path(root) == Path("/") else f" --root {root}"
    ports = {s.bridge: [x.name for x in s.links if x.name != s.bridge] for s in j.steps}
    out.print(
        "A host network change is waiting for confirm:",
        "  bridges:   " + "; ".join(f"{b} (ports {', '.join(p) or '-'})"
                                    for b, p in ports.items()),
        f"  state:     {j.state}" + (f", rolling back now: {j.rollback_now}"
                                     if j.rollback_now else ""),
        ("  rollback:  at the next boot (the host rebooted before it was confirmed)"
         if found.from_disk else f"  rollback:  {when(time.time() + left, time.time())} "
                                 "unless confirmed"),
        f"  watchdog:  pid {w.pid if w else '-'} ({'running' if running else 'NOT running'})",
        f"  journal:   {path}",
        f"Run `kvmnet confirm{arg}` from a new connection to keep it, or "
        f"`kvmnet rollback{arg}` to undo it now.")


@app.command()
def confirm(root: RootOpt = Path("/"), as_json: JsonOpt = False) -> None:
    """Keep the host network change the last apply made: stops its rollback watchdog.

    Run it from a new connection to the host: that it works is the proof. It says how
    much time was left (`kvmnet status` shows the countdown before).
    """
    from kvmnet.apply.bridge.store import pending
    from kvmnet.apply.bridge.transaction import confirm as do_confirm

    found = pending(root)
    left = _left(found.journal.deadline) if found and not found.from_disk else None
    last = do_confirm(root)
    bridges = ", ".join(last.bridges or ()) or "-"
    spare = f" with {span(left)} to spare" if left is not None and left > 0 else ""
    _print(last, as_json, f"Confirmed{spare}: host bridge change ({bridges}) kept; the "
                          "watchdog is stopped.")


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
