"""The host-bridge transaction's state files as typed, versioned records, with one
codec each (JSON text <-> record). Pure: where the files live and how they are read
and written is kvmnet.apply.bridge.store.

Why: the rollback journal is the most safety-critical data kvmnet keeps. It crosses a
process (apply writes it, the detached watchdog rolls back from it) and a reboot (its
copy under var/lib/kvmnet is what the boot unit rolls back from), possibly between two
versions of kvmnet (an upgrade while a change waits for confirm). So every file says
its format ("kvmnet": N, beside the record's fields); a reader refuses a format it does
not know, and anything malformed (not JSON, a missing field, a string where a number
belongs, an unknown key), with a LiveError naming the file and the field, never a
traceback and never a guess; and a format an earlier kvmnet wrote is upgraded on read.
pydantic checks the records (strict: no coercion of "1500" to 1500).

    host-tx.json   Journal, format 2; the copy on disk is the same record with
                   `persisted` set. Format 1 (the untyped dict of kvmnet before this
                   module) is upgraded: its readers gave missing fields defaults (the
                   same here), "kvmnet" itself may be missing, and "from_disk" (a
                   marker of the reader it sometimes wrote back) is dropped. Format 2
                   keeps format 1's shape (old content in standard base64, links as
                   dataclasses.asdict had them), so a watchdog of the kvmnet before
                   still reads what this one writes during an upgrade.
    last-tx.json   Outcome, format 1 (the fields it always had, now checked).
    watchdog.json  Registration, format 1 (the earlier file had no "kvmnet" and the
                   same fields: read as format 1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from kvmnet.apply.bridge.links import Link
from kvmnet.apply.bridge.persist import FileChange
from kvmnet.errors import LiveError

if TYPE_CHECKING:
    from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")

# pydantic's config for every record (and the Link and FileChange records inside)
STRICT = {"strict": True, "extra": "forbid"}

JOURNAL_FORMAT = 2
OUTCOME_FORMAT = 1
REGISTRATION_FORMAT = 1

State = Literal["changing", "checking", "waiting", "rollback-failed"]
Kind = Literal["confirmed", "committed", "rolled back", "nothing to do"]


@dataclass(frozen=True, kw_only=True)
class Persisted:
    """What the first save (kvmnet.apply.bridge.boot) did outside run/, undone when the
    transaction ends."""

    boot_id: str                    # the boot apply ran in: another one means a reboot
    new_dirs: tuple[str, ...]       # folders it made under root, outermost first
    unit: str                       # how the boot unit was enabled (systemctl or a link)

    __pydantic_config__ = STRICT


@dataclass(frozen=True, kw_only=True)
class Step:
    """One host.bridge action of the transaction: what its undo puts back."""

    bridge: str
    links: tuple[Link, ...]         # each link the step touches, as it was before
    files: tuple[FileChange, ...]   # each config file it writes, with the old content

    __pydantic_config__ = STRICT


@dataclass(frozen=True, kw_only=True)
class Journal:
    """A host change waiting for confirm: how to undo it, and when. Every field is
    written, null or not, and must be there (a format-1 journal gets the defaults its
    readers used: JOURNAL_1_DEFAULTS)."""

    txid: str
    state: State
    steps: tuple[Step, ...]
    netns: str | None               # the network namespace the links are in
    apply_pid: int | None           # the apply process: the watchdog rolls back if it dies
    apply_start: str | None         # before its self-check; its start time tells a reused
                                    # pid apart (None: a format-1 journal without them)
    root: str | None                # --root (None: a format-1 journal without it)
    created: float | None           # time.time() of the first step
    timeout: float                  # the confirm timeout, seconds
    deadline: float                 # time.monotonic(): one clock for all processes of a boot
    persisted: Persisted | None     # None until the first save
    rollback_now: str | None        # set: the watchdog rolls back at once, this is why
    errors: tuple[str, ...]         # what a failed rollback could not put back

    __pydantic_config__ = STRICT


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """How a transaction ended (last-tx.json), or why there was nothing to do."""

    outcome: Kind
    reason: str
    txid: str | None = None
    at: float | None = None             # time.time()
    bridges: tuple[str, ...] | None = None
    seconds: float | None = None        # how long a rollback took
    done: tuple[str, ...] | None = None  # what it did, one line each
    boot: bool | None = None            # True: rolled back at boot

    __pydantic_config__ = STRICT


@dataclass(frozen=True, kw_only=True)
class Registration:
    """The running watchdog (watchdog.json): its pid, its start time and its transaction."""

    pid: int
    start: str | None                   # watchdog.start_time(pid): tells a reused pid apart
    txid: str

    __pydantic_config__ = STRICT


# -- the codecs ---------------------------------------------------------------------

# what format 1's readers took for a missing field (a deadline of 0 has passed: a
# journal without one was rolled back at once, and still is)
JOURNAL_1_DEFAULTS: dict[str, Any] = {
    "steps": [], "netns": None, "apply_pid": None, "apply_start": None, "root": None,
    "created": None, "timeout": 0.0, "deadline": 0.0, "persisted": None,
    "rollback_now": None, "errors": []}


def _upgrade_journal_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> 2: the same fields, missing ones as its readers defaulted them;
    `from_disk`, a reader's marker that rollback sometimes wrote back, is dropped."""
    data.pop("from_disk", None)
    return {**JOURNAL_1_DEFAULTS, **data}


def _identity(data: dict[str, Any]) -> dict[str, Any]:
    return data


class Codec(Generic[T]):
    """One state file's record type and formats, and the only way to and from its JSON:
    `current` is written; every format in `upgrades` is read and upgraded to the current
    one; a file without "kvmnet" is taken for format `unversioned` (None: refused)."""

    def __init__(self, what: str, record: type[T], current: int,
                 upgrades: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]],
                 unversioned: int | None, sparse: bool = False) -> None:
        self.what, self.record, self.current = what, record, current
        self.upgrades, self.unversioned = upgrades, unversioned
        self.sparse = sparse  # fields that are None are left out of the file

    @cached_property
    def adapter(self) -> TypeAdapter[T]:
        """Built on first use, pydantic imported then (~0.2 s together): `kvmnet
        confirm` with nothing pending, or a watchdog's check of a missing file, never
        pays it."""
        from pydantic import TypeAdapter

        return TypeAdapter(self.record)

    def dumps(self, record: T) -> bytes:
        """The record as its file holds it: {"kvmnet": format, fields...}."""
        fields = self.adapter.dump_python(record, mode="json", exclude_none=self.sparse)
        return json.dumps({"kvmnet": self.current, **fields}, indent=1).encode() + b"\n"

    def loads(self, text: bytes | str, where: str) -> T:
        """The record in `text` (read from `where`, named in errors), upgraded to the
        current format; LiveError for anything else."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise LiveError(f"cannot read the {self.what} {where}: not JSON ({e})") from None
        if not isinstance(data, dict):
            raise LiveError(f"cannot read the {self.what} {where}: not a JSON object")
        fmt = data.pop("kvmnet", self.unversioned)
        if type(fmt) is not int or fmt not in self.upgrades:  # (type: True == 1 in Python)
            known = ", ".join(map(str, self.upgrades))
            raise LiveError(f"cannot read the {self.what} {where}: its format "
                            f"{'is not named' if fmt is None else repr(fmt)} is not one "
                            f"this kvmnet reads ({known}); a newer kvmnet wrote it? Use "
                            "that one")
        data = self.upgrades[fmt](data)
        adapter = self.adapter
        from pydantic import ValidationError  # (loaded by now: the adapter imports it)

        try:
            return adapter.validate_json(json.dumps(data), strict=True)
        except ValidationError as e:
            raise LiveError(f"cannot read the {self.what} {where}: {_problems(e)}") from None


JOURNAL = Codec("host transaction journal", Journal, JOURNAL_FORMAT,
                {1: _upgrade_journal_1, 2: _identity}, unversioned=1)
OUTCOME = Codec("last host transaction's outcome", Outcome, OUTCOME_FORMAT,
                {1: _identity}, unversioned=None, sparse=True)
REGISTRATION = Codec("watchdog registration", Registration, REGISTRATION_FORMAT,
                     {1: _identity}, unversioned=1)


def _problems(e: ValidationError) -> str:
    """pydantic's errors as one line: where in the record, what is wrong (at most 3)."""
    out = []
    for err in e.errors(include_url=False)[:3]:
        where = ".".join(str(x) for x in err["loc"]) or "the record"
        got = f" (got {err['input']!r:.40})" if "input" in err and not isinstance(
            err["input"], dict | list) else ""
        out.append(f"{where}: {err['msg'].lower()}{got}")
    more = e.error_count() - len(out)
    return "; ".join(out) + (f"; and {more} more" if more > 0 else "")


def describe(outcome: Outcome | None) -> str:
    """The last transaction's end, for a message ("... was rolled back (why) at ...")."""
    if outcome is None:
        return "no host change is waiting for confirm"
    what = f"the last host change was {outcome.outcome}"
    if outcome.reason:
        what += f" ({outcome.reason})"
    if outcome.at:
        what += time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(outcome.at))
    return what


def report(outcome: Outcome) -> dict[str, Any]:
    """The outcome's fields as JSON data (what `--json` prints), without the format."""
    return dict(OUTCOME.adapter.dump_python(outcome, mode="json", exclude_none=True))
