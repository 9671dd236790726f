"""A host network change as a transaction that rolls itself back unless confirmed.

`apply_bridge` (the `host.bridge` action of apply) writes the journal first,
starts the watchdog (a detached process, see watchdog.py), and only then writes
the persistent files and moves the NIC into the bridge. It checks by itself that
the gateway (or the bridge's `check:` address) answers; if not, the watchdog
rolls everything back at once. Otherwise the watchdog waits for `kvmnet
confirm` until the confirm timeout runs out, then rolls back. `rollback` undoes
on request. Every step of one apply run joins the same transaction.

A reboot before confirm ends the watchdog and empties /run: a copy of the
journal on disk and a unit that runs `kvmnet rollback --boot` early at boot
roll the change back then (hostboot.py).

Files under ROOT/run/kvmnet/ (ROOT is --root, default /):

    host-tx.json   the journal of the change waiting for confirm: per step the
                   links as they were (hostbridge.Link) and the files as they were
                   (persist.FileChange), the deadline, the network namespace
    host-tx.lock   flock: one change, confirm or rollback at a time
    watchdog.json  the watchdog's pid, its start time and the transaction it guards
    watchdog.log   what the watchdog did
    last-tx.json   how the last change ended: confirmed, committed or rolled back (why)

and, from before the first change until the transaction ends (each written before
anything changes, removed on confirm, commit or rollback):

    ROOT/var/lib/kvmnet/host-tx.json   the journal again, on disk, with the boot id
                                       (/proc/sys/kernel/random/boot_id) apply ran under
    ROOT/etc/systemd/system/kvmnet-boot-rollback.service
                                       runs `kvmnet rollback --boot --root ROOT` at boot
    ROOT/etc/systemd/system/sysinit.target.wants/kvmnet-boot-rollback.service
                                       its enabling link (or `systemctl enable` made it)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvmnet.apply.bridge.options import HostOptions as HostOptions  # (also imported from here)
from kvmnet.backend.files import write_bytes_atomic
from kvmnet.backend.lock import locked
from kvmnet.errors import LiveError

if TYPE_CHECKING:
    from kvmnet.model.spec import Host, HostBridge
    from kvmnet.plan import Action

RUN_DIR = "run/kvmnet"


def run_dir(root: Path) -> Path:
    return Path(root) / RUN_DIR


def journal_path(root: Path) -> Path:
    return run_dir(root) / "host-tx.json"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise LiveError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else None


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(data, indent=1).encode() + b"\n", 0o600)


def read_journal(root: Path) -> dict[str, Any] | None:
    return _read(journal_path(root))


def last_outcome(root: Path) -> dict[str, Any] | None:
    return _read(run_dir(root) / "last-tx.json")


@contextmanager
def tx_lock(root: Path) -> Iterator[None]:
    """One change, confirm or rollback at a time (kvmnet.backend.lock: never a planted
    symlink or another user's file)."""
    with locked(run_dir(root) / "host-tx.lock", "the host transaction lock"):
        yield


def describe(outcome: dict[str, Any] | None) -> str:
    if not outcome:
        return "no host change is waiting for confirm"
    what = f"the last host change was {outcome.get('outcome', '?')}"
    if outcome.get("reason"):
        what += f" ({outcome['reason']})"
    if outcome.get("at"):
        what += time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(outcome["at"]))
    return what


def pending_error(root: Path, journal: Path | None = None) -> LiveError:
    arg = "" if Path(root) == Path("/") else f" --root {root}"
    return LiveError(f"a host network change from an earlier apply is waiting for confirm "
                     f"(journal {journal or journal_path(root)}): run `kvmnet confirm{arg}` to "
                     "keep it or "
                     f"`kvmnet rollback{arg}` to undo it, then apply again")


# -- apply ----------------------------------------------------------------------

def render_files(host: Host, root: Path) -> tuple[str, dict[str, str]]:
    """(renderer, {path: text}): the host's own renderer unless the spec names one."""
    from kvmnet.backend.detect import detect_renderer
    from kvmnet.model.spec import Spec
    from kvmnet.render.hostconf import render_host

    renderer = host.renderer if host.renderer != "auto" else detect_renderer(root)
    return renderer, render_host(Spec(host=host), renderer)


def check_budget(hb: HostBridge, opts: HostOptions) -> float:
    """How long the self-check may wait: a bridge with STP forwards after 2 x delay."""
    if opts.check_within is not None:
        return opts.check_within
    return 5.0 + (2 * (hb.forward_delay if hb.forward_delay is not None else 15)
                  if hb.stp else 0)


def apply_bridge(action: Action, netns: str | None, opts: HostOptions) -> str:
    """Run one host.bridge action inside the transaction; the result line for apply."""
    if action.host is None:
        raise LiveError(f"{action.target}: the action carries no host section")
    br = action.target.split("/", 1)[1]
    hb = action.host.bridges[br]
    renderer, files = render_files(action.host, opts.root)
    budget = check_budget(hb, opts)
    with tx_lock(opts.root):
        before, changes, j = _begin(br, hb, files, netns, opts, budget)
        try:
            notes, changed = _change(br, hb, before, changes, netns, opts)
        except Exception as e:  # whatever broke: the journal knows how to undo it
            failed: Exception | None = e
        else:
            failed = None
            j.update(state="checking")
            _write(journal_path(opts.root), j)
    if failed is not None:
        out = rollback_now(opts.root, opts.txid, f"{br}: {failed}")
        raise LiveError(f"{br}: {failed}; {_undone(out)}")
    check = _self_check(br, hb, before, netns, opts, budget)
    written = ", ".join(c.path for c in changes) or "already up to date"
    head = (f"{br} up with {', '.join(hb.ports) or 'no ports'} ({'; '.join(notes)}; netlink "
            f"change {changed * 1000:.0f} ms); {check}; {renderer} files: {written}")
    return f"{head}; {_arm(opts)}"


def _begin(br: str, hb: HostBridge, files: dict[str, str], netns: str | None,
           opts: HostOptions, budget: float) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Under the lock: refuse or record (the journal, before anything changes) and make
    sure the watchdog runs. Returns the links as they are, the file changes, the journal."""
    from kvmnet.apply.bridge import boot as hostboot
    from kvmnet.apply.bridge import migrate as hostbridge
    from kvmnet.apply.bridge import persist, watchdog
    from kvmnet.backend.host import iproute, wireless_links

    j = read_journal(opts.root)
    if j is not None and j.get("txid") != opts.txid:
        raise pending_error(opts.root)
    kept = hostboot.load(opts.root)
    if kept is not None and kept.get("txid") != opts.txid:
        raise pending_error(opts.root, hostboot.persisted_path(opts.root))
    with iproute(netns) as ipr:
        before = hostbridge.snapshot(ipr, [br, *hb.ports])
    reasons = hostbridge.refusals(br, hb, before, wireless_links(hb.ports, netns))
    if reasons:
        raise LiveError(f"not changing {br}: " + "; ".join(reasons))
    changes = persist.prepare(opts.root, files, time.strftime("%Y%m%dT%H%M%S-")
                              + opts.txid[:8])
    step = {"bridge": br, "links": [x.as_json() for x in before],
            "files": [c.as_json() for c in changes]}
    # the change may wait for STP as long as the self-check may: room for both
    deadline = time.monotonic() + opts.confirm_timeout + 2 * budget
    if j is not None:
        j["steps"].append(step)
        j.update(state="changing", deadline=max(j["deadline"], deadline))
        hostboot.save(opts.root, j)  # (on disk first: a reboot must find it)
        _write(journal_path(opts.root), j)
        return before, changes, j
    j = {"kvmnet": 1, "txid": opts.txid, "netns": netns, "apply_pid": os.getpid(),
         "apply_start": watchdog.start_time(os.getpid()), "root": str(opts.root),
         "created": time.time(), "timeout": opts.confirm_timeout, "deadline": deadline,
         "state": "changing", "steps": [step]}
    try:
        hostboot.save(opts.root, j)
        _write(journal_path(opts.root), j)
        watchdog.spawn(opts.root, opts.txid)
    except LiveError:
        hostboot.clear(opts.root, j)
        journal_path(opts.root).unlink(missing_ok=True)
        raise
    return before, changes, j


def _change(br: str, hb: HostBridge, before: list[Any], changes: list[Any],
            netns: str | None, opts: HostOptions) -> tuple[list[str], float]:
    """The change itself: files, then links. (notes, seconds the netlink part took)"""
    from kvmnet.apply.bridge import migrate as hostbridge
    from kvmnet.apply.bridge import persist
    from kvmnet.backend.host import iproute

    persist.write(opts.root, changes)
    with iproute(netns) as ipr:
        t0 = time.monotonic()
        notes = hostbridge.migrate(ipr, br, hb, before)
        return notes, time.monotonic() - t0


def _self_check(br: str, hb: HostBridge, before: list[Any], netns: str | None,
                opts: HostOptions, budget: float) -> str:
    """Ping the check: address, else the gateway; roll back at once if it stays silent."""
    from kvmnet.backend.probe import ping

    target = _check_target(hb, before)
    if target is None:
        return "no self-check (no gateway, check: or default route to ping)"
    rtt = ping(target, netns, within=budget)
    if rtt is None:
        out = rollback_now(opts.root, opts.txid, f"self-check failed: {target} did not "
                           f"answer within {budget:.0f} s after the change of {br}")
        raise LiveError(f"self-check failed: {target} did not answer a ping within "
                        f"{budget:.0f} s after {br} was set up; {_undone(out)}")
    return f"self-check: {target} answered after {rtt:.2f} s"


def _check_target(hb: HostBridge, before: list[Any]) -> str | None:
    if hb.check is not None:
        return str(hb.check)
    if hb.gateway is not None:
        return str(hb.gateway)
    for link in before:
        for r in link.routes:
            if r.dst_len == 0 and r.gateway:
                return str(r.gateway)
    return None


def _arm(opts: HostOptions) -> str:
    """After a good self-check: wait for confirm (or keep at once when the timeout is 0)."""
    from kvmnet.apply.bridge import watchdog

    arg = "" if Path(opts.root) == Path("/") else f" --root {opts.root}"
    with tx_lock(opts.root):
        j = read_journal(opts.root)
        if j is None or j.get("txid") != opts.txid:
            last = last_outcome(opts.root)
            if last and last.get("txid") == opts.txid and last.get("outcome") == "confirmed":
                return "already confirmed"
            raise LiveError(f"the change did not stay: {describe(last)}")
        if opts.confirm_timeout <= 0:
            _finish(opts.root, j, "committed", "--confirm-timeout 0: kept after the self-check")
            watchdog.stop(opts.root, opts.txid)
            return "kept (no confirm asked)"
        j.update(state="waiting", deadline=time.monotonic() + opts.confirm_timeout)
        _write(journal_path(opts.root), j)
        pid = (watchdog.registered(opts.root) or {}).get("pid", "?")
    return (f"run `kvmnet confirm{arg}` within {opts.confirm_timeout:.0f} s to keep it, or "
            f"the watchdog (pid {pid}) rolls it back")


def _undone(outcome: dict[str, Any] | None) -> str:
    if outcome and outcome.get("outcome") == "rolled back":
        return (f"rolled back (links, addresses, routes and files as before) in "
                f"{outcome.get('seconds', 0):.2f} s")
    return "ROLLBACK DID NOT FINISH: run `kvmnet rollback` (see watchdog.log)"


def _finish(root: Path, j: dict[str, Any], outcome: str, reason: str,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from kvmnet.apply.bridge import boot as hostboot

    last = {"kvmnet": 1, "txid": j.get("txid"), "outcome": outcome, "reason": reason,
            "at": time.time(), "bridges": [s["bridge"] for s in j.get("steps", ())],
            **(extra or {})}
    _write(run_dir(root) / "last-tx.json", last)
    hostboot.clear(root, j)  # first: a copy left behind would roll back at the next boot
    journal_path(root).unlink(missing_ok=True)
    return last


# -- confirm and rollback -------------------------------------------------------------

def rollback_now(root: Path, txid: str, reason: str, wait: float = 20.0
                 ) -> dict[str, Any] | None:
    """Have the watchdog roll back at once (it does not share our session); do it here
    if it does not within `wait` seconds."""
    from kvmnet.apply.bridge import watchdog

    with tx_lock(root):
        j = read_journal(root)
        if j is None or j.get("txid") != txid:
            return last_outcome(root)
        j["rollback_now"] = reason
        _write(journal_path(root), j)
    end = time.monotonic() + wait
    while time.monotonic() < end and watchdog.alive(root, txid):
        last = last_outcome(root)
        if last and last.get("txid") == txid and not journal_path(root).exists():
            return last
        time.sleep(0.05)
    return rollback(root, reason, txid) or last_outcome(root)


def rollback(root: Path, reason: str = "kvmnet rollback", txid: str | None = None
             ) -> dict[str, Any] | None:
    """Undo the pending change (every step, newest first): links, then files.

    None when nothing is pending (or another transaction is). Raises LiveError,
    keeping the journal for another try, when something could not be put back.
    """
    from kvmnet.apply.bridge import boot as hostboot
    from kvmnet.apply.bridge import migrate as hostbridge
    from kvmnet.apply.bridge import persist, watchdog
    from kvmnet.apply.bridge import undo as hostundo
    from kvmnet.apply.bridge.migrate import Link
    from kvmnet.apply.bridge.persist import FileChange
    from kvmnet.backend.host import iproute

    with tx_lock(root):
        j = hostboot.pending(root) if txid is None else read_journal(root)
        if j is None or (txid is not None and j.get("txid") != txid):
            return None
        t0 = time.monotonic()
        done: list[str] = []
        errors: list[str] = []
        for step in reversed(j.get("steps", [])):
            links = [Link.from_json(x) for x in step["links"]]
            try:
                with iproute(j.get("netns")) as ipr:
                    done += hostundo.restore(ipr, links)
                    now = hostbridge.snapshot(ipr, [x.name for x in links])
                errors += hostundo.differences(links, now)
            except LiveError as e:
                errors.append(str(e))
            try:
                done += persist.restore(root, [FileChange.from_json(f) for f in step["files"]])
            except (OSError, LiveError) as e:
                errors.append(f"files: {e}")
        seconds = time.monotonic() - t0
        if errors:
            j.update(state="rollback-failed", errors=errors)
            _write(journal_path(root), j)
            raise LiveError("rollback incomplete: " + "; ".join(errors)
                            + f" (journal kept: {journal_path(root)}; fix and run "
                            "`kvmnet rollback` again)")
        last = _finish(root, j, "rolled back", reason, {"seconds": round(seconds, 3),
                                                        "done": done})
    watchdog.stop(root, j["txid"])  # (unless we are it)
    return last


def confirm(root: Path) -> dict[str, Any]:
    """Keep the pending change: stop the watchdog, drop the journal."""
    from kvmnet.apply.bridge import boot as hostboot
    from kvmnet.apply.bridge import watchdog

    with tx_lock(root):
        j = hostboot.pending(root)
        if j is None:
            raise LiveError(f"nothing to confirm: {describe(last_outcome(root))}")
        if j.get("rollback_now"):
            raise LiveError(f"too late to confirm: {j['rollback_now']}; it is being rolled back")
        if j.get("state") == "rollback-failed":
            raise LiveError("a rollback of this change failed half way: run `kvmnet rollback` "
                            f"again (errors: {'; '.join(j.get('errors', []))})")
        if j.get("state") in ("changing", "checking") and not j.get("from_disk"):
            raise LiveError("apply is still changing or checking the host: confirm when it "
                            "has finished")
        last = _finish(root, j, "confirmed", "kvmnet confirm")
    watchdog.stop(root, j["txid"])
    return last

