"""Where the host-bridge transaction keeps its files, and reading, writing and removing
them (what they hold, and the one codec of each: kvmnet.apply.bridge.journal).

Under ROOT/run/kvmnet/ (ROOT is --root, default /; run/ is tmpfs: a reboot empties it):

    host-tx.json   the journal of the change waiting for confirm (journal.Journal)
    host-tx.lock   flock: one change, confirm or rollback at a time (tx_lock)
    watchdog.json  the running watchdog (journal.Registration)
    watchdog.log   what the watchdog did
    last-tx.json   how the last change ended (journal.Outcome)

and, from before the first change until the transaction ends (written by
kvmnet.apply.bridge.boot.save before anything changes, removed by `clear`):

    ROOT/var/lib/kvmnet/host-tx.json   the journal again, on disk, with `persisted`
    ROOT/etc/systemd/system/kvmnet-boot-rollback.service
                                       runs `kvmnet rollback --boot --root ROOT` at boot
    ROOT/etc/systemd/system/sysinit.target.wants/kvmnet-boot-rollback.service
                                       its enabling link (or `systemctl enable` made it)

Every write is atomic, 0600, never through a symlink (kvmnet.backend.files).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TypeVar

from kvmnet.apply.bridge.journal import (
    JOURNAL,
    OUTCOME,
    REGISTRATION,
    Codec,
    Journal,
    Kind,
    Outcome,
    Registration,
)
from kvmnet.backend.files import make_dirs, read_trusted, remove, write_bytes_atomic
from kvmnet.backend.lock import locked
from kvmnet.errors import LiveError

T = TypeVar("T")

RUN_DIR = "run/kvmnet"
STATE_DIR = "var/lib/kvmnet"
UNIT = "kvmnet-boot-rollback.service"
UNIT_DIR = "etc/systemd/system"
WANTS_DIR = f"{UNIT_DIR}/sysinit.target.wants"


def run_dir(root: Path) -> Path:
    return Path(root) / RUN_DIR


def journal_path(root: Path) -> Path:
    return run_dir(root) / "host-tx.json"


def persisted_path(root: Path) -> Path:
    """The journal's copy on disk (what the boot unit rolls back from)."""
    return Path(root) / STATE_DIR / "host-tx.json"


def outcome_path(root: Path) -> Path:
    return run_dir(root) / "last-tx.json"


def registration_path(root: Path) -> Path:
    return run_dir(root) / "watchdog.json"


def _read(codec: Codec[T], path: Path) -> T | None:
    """The record in path, None when there is no file; LiveError when it is not one
    (or not a regular file: never read through a symlink)."""
    try:
        found = read_trusted(path, f"the {codec.what}")
    except OSError as e:
        raise LiveError(f"cannot read the {codec.what} {path}: {e.strerror or e}") from None
    return None if found is None else codec.loads(found, str(path))


def _write(codec: Codec[T], path: Path, record: T) -> None:
    make_dirs(path.parent)
    write_bytes_atomic(path, codec.dumps(record), 0o600)


def read_journal(root: Path) -> Journal | None:
    return _read(JOURNAL, journal_path(root))


def write_journal(root: Path, j: Journal) -> None:
    _write(JOURNAL, journal_path(root), j)


def read_copy(root: Path) -> Journal | None:
    """The journal's copy on disk."""
    return _read(JOURNAL, persisted_path(root))


def write_copy(root: Path, j: Journal) -> None:
    _write(JOURNAL, persisted_path(root), j)


class Pending(NamedTuple):
    journal: Journal
    from_disk: bool  # only the copy on disk was there (a reboot emptied run/)


def pending(root: Path) -> Pending | None:
    """The run journal, else its copy on disk (a reboot emptied run/ and the boot unit
    did not run, or the run journal was lost)."""
    j = read_journal(root)
    if j is not None:
        return Pending(j, False)
    j = read_copy(root)
    return None if j is None else Pending(j, True)


def last_outcome(root: Path) -> Outcome | None:
    return _read(OUTCOME, outcome_path(root))


def registered(root: Path) -> Registration | None:
    return _read(REGISTRATION, registration_path(root))


def register(root: Path, me: Registration) -> None:
    _write(REGISTRATION, registration_path(root), me)


@contextmanager
def tx_lock(root: Path) -> Iterator[None]:
    """One change, confirm or rollback at a time (kvmnet.backend.lock: never a planted
    symlink or another user's file)."""
    with locked(run_dir(root) / "host-tx.lock", "the host transaction lock"):
        yield


def clear(root: Path, j: Journal | None) -> None:
    """Drop the copy on disk, then the boot unit (idle without it) and its link, and the
    folders the first save made. unlink never follows a symlink; in the link's place
    only a symlink is removed (anything else there is not kvmnet's)."""
    root = Path(root)
    for rel in (f"{STATE_DIR}/host-tx.json", f"{UNIT_DIR}/{UNIT}", f"{WANTS_DIR}/{UNIT}"):
        remove(root / rel, symlink_only=rel.startswith(WANTS_DIR))
    for d in reversed(j.persisted.new_dirs if j and j.persisted else ()):
        try:
            (root / d).rmdir()
        except OSError:
            pass  # not empty (forwards.json, other units): keep it


def end(root: Path, j: Journal, outcome: Kind, reason: str, seconds: float | None = None,
        done: list[str] | None = None, boot: bool | None = None) -> Outcome:
    """The transaction is over: record how it ended, then drop the copy on disk and the
    boot unit (first: a copy left behind would roll back at the next boot), then the
    run journal (which tells the watchdog to leave)."""
    last = Outcome(outcome=outcome, reason=reason, txid=j.txid, at=time.time(),
                   bridges=tuple(s.bridge for s in j.steps), seconds=seconds,
                   done=None if done is None else tuple(done), boot=boot)
    _write(OUTCOME, outcome_path(root), last)
    clear(root, j)
    remove(journal_path(root))
    return last
