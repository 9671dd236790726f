"""Undo a pending host change now, from its journal: what `kvmnet rollback` and the
watchdog do (the boot unit's way back, files first: kvmnet.apply.bridge.boot).

Below both the watchdog and the transaction: the watchdog rolls back with `revert`;
kvmnet.apply.bridge.transaction.rollback is `revert` and then stopping the watchdog.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from kvmnet.apply.bridge import migrate as hostbridge
from kvmnet.apply.bridge import persist
from kvmnet.apply.bridge import undo as hostundo
from kvmnet.apply.bridge.journal import Journal, Outcome
from kvmnet.apply.bridge.store import (
    end,
    journal_path,
    pending,
    read_journal,
    tx_lock,
    write_journal,
)
from kvmnet.backend.host import iproute
from kvmnet.errors import LiveError


def revert(root: Path, reason: str, txid: str | None = None) -> Outcome | None:
    """Undo the pending change (every step, newest first): links, then files.

    With txid, only that transaction's run journal (the watchdog's and apply's own);
    without, the run journal or else its copy on disk (`kvmnet rollback`). None when
    nothing is pending (or another transaction is). Raises LiveError, keeping the
    journal for another try, when something could not be put back.
    """
    with tx_lock(root):
        if txid is None:
            found = pending(root)
            j = None if found is None else found.journal
        else:
            j = read_journal(root)
        if j is None or (txid is not None and j.txid != txid):
            return None
        t0 = time.monotonic()
        done, errors = _undo(root, j)
        seconds = time.monotonic() - t0
        if errors:
            write_journal(root, dataclasses.replace(j, state="rollback-failed",
                                                    errors=tuple(errors)))
            raise LiveError("rollback incomplete: " + "; ".join(errors)
                            + f" (journal kept: {journal_path(root)}; fix and run "
                            "`kvmnet rollback` again)")
        return end(root, j, "rolled back", reason, seconds=round(seconds, 3), done=done)


def _undo(root: Path, j: Journal) -> tuple[list[str], list[str]]:
    """Each step, newest first: its links, then its files. (done, errors)"""
    done: list[str] = []
    errors: list[str] = []
    for step in reversed(j.steps):
        try:
            with iproute(j.netns) as ipr:
                done += hostundo.restore(ipr, step.links)
                now = hostbridge.snapshot(ipr, [x.name for x in step.links])
            errors += hostundo.differences(step.links, now)
        except LiveError as e:
            errors.append(str(e))
        try:
            done += persist.restore(root, step.files)
        except (OSError, LiveError) as e:
            errors.append(f"files: {e}")
    return done, errors
