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
roll the change back then (boot.py).

The modules of the transaction, each importing only those below it:

    transaction   apply, confirm, rollback (this module)
    watchdog      the detached process: started, found and stopped from here
    revert        the way back now (links, then files), for rollback and the watchdog
    boot          the copy on disk and the boot unit; the way back at boot
    store         where the files are (listed there), reading and writing them, the lock
    journal       the records in those files and the one codec of each
    migrate, undo  netlink: the change and its undo (routes6: its IPv6 default routes)
    links, persist, options   the records of links and files, apply's options
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kvmnet.apply.bridge import boot, lower, persist, watchdog
from kvmnet.apply.bridge import migrate as hostbridge
from kvmnet.apply.bridge.journal import Journal, Outcome, Step, describe
from kvmnet.apply.bridge.links import Link
from kvmnet.apply.bridge.options import HostOptions
from kvmnet.apply.bridge.persist import FileChange
from kvmnet.apply.bridge.revert import revert
from kvmnet.apply.bridge.store import (
    clear,
    end,
    journal_path,
    last_outcome,
    pending,
    persisted_path,
    read_copy,
    read_journal,
    registered,
    tx_lock,
    write_journal,
)
from kvmnet.backend.files import remove as remove_file
from kvmnet.backend.host import iproute, wireless_links
from kvmnet.errors import LiveError
from kvmnet.plan.host import wireless_port
from kvmnet.plan.host_lower import lower_links, step_links

if TYPE_CHECKING:
    from kvmnet.model.spec import Host, HostBridge
    from kvmnet.plan import Action


def pending_error(root: Path, journal: Path | None = None) -> LiveError:
    arg = "" if Path(root) == Path("/") else f" --root {root}"
    return LiveError(f"a host network change from an earlier apply is waiting for confirm "
                     f"(journal {journal or journal_path(root)}): run `kvmnet confirm{arg}` to "
                     "keep it or "
                     f"`kvmnet rollback{arg}` to undo it, then apply again")


# -- apply ----------------------------------------------------------------------

def render_files(host: Host, root: Path) -> tuple[str, dict[str, str]]:
    """(renderer, {path: text}): the host's own renderer unless the spec names one."""
    # (here: confirm and rollback load this module too, and never render)
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
        before, changes, j = _begin(br, hb, files, netns, opts, budget, action.host)
        try:
            notes, changed = _change(action.host, br, before, changes, netns, opts)
        except Exception as e:  # whatever broke: the journal knows how to undo it
            failed: Exception | None = e
        else:
            failed = None
            write_journal(opts.root, dataclasses.replace(j, state="checking"))
    if failed is not None:
        out = rollback_now(opts.root, opts.txid, f"{br}: {failed}")
        raise LiveError(f"{br}: {failed}; {_undone(out)}")
    check = _self_check(br, hb, before, netns, opts, budget)
    written = ", ".join(c.path for c in changes) or "already up to date"
    head = (f"{br} up with {', '.join(hb.ports) or 'no ports'} ({'; '.join(notes)}; netlink "
            f"change {changed * 1000:.0f} ms); {check}; {renderer} files: {written}")
    return f"{head}; {_arm(opts)}"


def _begin(br: str, hb: HostBridge, files: dict[str, str], netns: str | None,
           opts: HostOptions, budget: float, host: Host | None = None
           ) -> tuple[list[Link], list[FileChange], Journal]:
    """Under the lock: refuse or record (the journal, before anything changes) and make
    sure the watchdog runs. Returns the links as they are, the file changes, the journal.
    `host`: the spec's host section (its bonds and VLANs); default: hb alone."""
    from kvmnet.model.spec import Host

    host = host or Host(bridges={br: hb})
    j = read_journal(opts.root)
    if j is not None and j.txid != opts.txid:
        raise pending_error(opts.root)
    kept = read_copy(opts.root)
    if kept is not None and kept.txid != opts.txid:
        raise pending_error(opts.root, persisted_path(opts.root))
    names = step_links(host, br)
    with iproute(netns) as ipr:
        before = hostbridge.snapshot(ipr, names)
    nics = [n for n in names[1:] if n not in host.bonds and n not in host.vlans]
    plain = [p for p in hb.ports if p not in host.bonds and p not in host.vlans]
    reasons = hostbridge.refusals(br, hb.model_copy(update={"ports": plain}), before,
                                  wireless_links(nics, netns))
    reasons += lower.refusals(host, br, before)
    reasons += [wireless_port(n) for n in sorted(wireless_links(nics, netns))
                if n not in plain]
    if reasons:
        raise LiveError(f"not changing {br}: " + "; ".join(reasons))
    changes = persist.prepare(opts.root, files, time.strftime("%Y%m%dT%H%M%S-")
                              + opts.txid[:8])
    step = Step(bridge=br, links=tuple(before), files=tuple(changes))
    # the change may wait for STP as long as the self-check may: room for both
    deadline = time.monotonic() + opts.confirm_timeout + 2 * budget
    if j is not None:
        j = dataclasses.replace(j, steps=(*j.steps, step), state="changing",
                                deadline=max(j.deadline, deadline))
        j = boot.save(opts.root, j)  # (on disk first: a reboot must find it)
        write_journal(opts.root, j)
        return before, changes, j
    j = Journal(txid=opts.txid, state="changing", steps=(step,), netns=netns,
                apply_pid=os.getpid(), apply_start=watchdog.start_time(os.getpid()),
                root=str(opts.root), created=time.time(), timeout=opts.confirm_timeout,
                deadline=deadline, persisted=None, rollback_now=None, errors=())
    try:
        j = boot.save(opts.root, j)
        write_journal(opts.root, j)
        watchdog.spawn(opts.root, opts.txid)
    except LiveError:
        clear(opts.root, j)
        remove_file(journal_path(opts.root))
        raise
    return before, changes, j


def _change(host: Host, br: str, before: list[Link], changes: list[FileChange],
            netns: str | None, opts: HostOptions) -> tuple[list[str], float]:
    """The change itself: files, then links. (notes, seconds the netlink part took)"""
    persist.write(opts.root, changes)
    with iproute(netns) as ipr:
        t0 = time.monotonic()
        notes = hostbridge.migrate(ipr, br, host.bridges[br], before, host)
        took = time.monotonic() - t0
    if any(b in host.bonds for b in lower_links(host, br)):
        # a bond's NICs share one MAC and the LAN's switch learnt it where the bond sent
        # last (perhaps the NIC that is now the backup, which drops what it gets): a
        # gratuitous ARP through the active NIC teaches the switch and the neighbours
        from kvmnet.backend.announce import announce

        if announce(br, netns):
            notes.append("gratuitous ARP sent through the bond")
    return notes, took


def _self_check(br: str, hb: HostBridge, before: list[Link], netns: str | None,
                opts: HostOptions, budget: float) -> str:
    """Ping the check: address, else each default gateway (IPv4 and IPv6: a link-local
    one on the bridge); roll back at once if one stays silent."""
    from kvmnet.backend.probe import ping  # (here: confirm and rollback never ping)

    targets = _check_targets(hb, before)
    if not targets:
        return "no self-check (no gateway, check: or default route to ping)"
    answers = []
    for target in targets:
        rtt = ping(target, netns, within=budget, dev=br)
        if rtt is None:
            out = rollback_now(opts.root, opts.txid, f"self-check failed: {target} did not "
                               f"answer within {budget:.0f} s after the change of {br}")
            raise LiveError(f"self-check failed: {target} did not answer a ping within "
                            f"{budget:.0f} s after {br} was set up; {_undone(out)}")
        answers.append(f"{target} answered after {rtt:.2f} s")
    return "self-check: " + ", ".join(answers)


def _check_targets(hb: HostBridge, before: list[Link]) -> list[str]:
    """check:, else the spec's gateways, else the default routes' gateways the ports had
    (one of each IP version)."""
    if hb.check is not None:
        return [str(hb.check)]
    if hb.gateway_for(4) is not None or hb.gateway_for(6) is not None:
        return [str(g) for g in (hb.gateway_for(4), hb.gateway_for(6)) if g is not None]
    found: dict[int, str] = {}
    for link in before:
        for r in link.routes:
            if r.dst_len == 0 and r.gateway:
                found.setdefault(r.family, str(r.gateway))
    return [found[f] for f in sorted(found)]


def _arm(opts: HostOptions) -> str:
    """After a good self-check: wait for confirm (or keep at once when the timeout is 0)."""
    arg = "" if Path(opts.root) == Path("/") else f" --root {opts.root}"
    with tx_lock(opts.root):
        j = read_journal(opts.root)
        if j is None or j.txid != opts.txid:
            last = last_outcome(opts.root)
            if last and last.txid == opts.txid and last.outcome == "confirmed":
                return "already confirmed"
            raise LiveError(f"the change did not stay: {describe(last)}")
        if opts.confirm_timeout <= 0:
            end(opts.root, j, "committed", "--confirm-timeout 0: kept after the self-check")
            watchdog.stop(opts.root, opts.txid)
            return "kept (no confirm asked)"
        write_journal(opts.root, dataclasses.replace(
            j, state="waiting", deadline=time.monotonic() + opts.confirm_timeout))
        w = registered(opts.root)
    by = time.strftime("%H:%M:%S", time.localtime(time.time() + opts.confirm_timeout))
    return (f"run `kvmnet confirm{arg}` from a new connection within "
            f"{opts.confirm_timeout:.0f} s (by {by}; `kvmnet status{arg}` counts down) to keep "
            f"it, or the watchdog (pid {w.pid if w else '?'}) rolls it back")


def _undone(outcome: Outcome | None) -> str:
    if outcome and outcome.outcome == "rolled back":
        return (f"rolled back (links, addresses, routes and files as before) in "
                f"{outcome.seconds or 0:.2f} s")
    return "ROLLBACK DID NOT FINISH: run `kvmnet rollback` (see watchdog.log)"


# -- confirm and rollback -------------------------------------------------------------

def rollback_now(root: Path, txid: str, reason: str, wait: float = 20.0) -> Outcome | None:
    """Have the watchdog roll back at once (it does not share our session); do it here
    if it does not within `wait` seconds."""
    with tx_lock(root):
        j = read_journal(root)
        if j is None or j.txid != txid:
            return last_outcome(root)
        write_journal(root, dataclasses.replace(j, rollback_now=reason))
    end_at = time.monotonic() + wait
    while time.monotonic() < end_at and watchdog.alive(root, txid):
        last = last_outcome(root)
        if last and last.txid == txid and not journal_path(root).exists():
            return last
        time.sleep(0.05)
    return rollback(root, reason, txid) or last_outcome(root)


def rollback(root: Path, reason: str = "kvmnet rollback", txid: str | None = None
             ) -> Outcome | None:
    """Undo the pending change (kvmnet.apply.bridge.revert), then stop its watchdog
    (unless we are it). None when nothing is pending (or another transaction is).
    Raises LiveError, keeping the journal for another try, when something could not be
    put back."""
    last = revert(root, reason, txid)
    if last is not None and last.txid is not None:
        watchdog.stop(root, last.txid)
    return last


def confirm(root: Path) -> Outcome:
    """Keep the pending change: stop the watchdog, drop the journal."""
    with tx_lock(root):
        found = pending(root)
        if found is None:
            raise LiveError(f"nothing to confirm: {describe(last_outcome(root))}")
        j = found.journal
        if j.rollback_now:
            raise LiveError(f"too late to confirm: {j.rollback_now}; it is being rolled back")
        if j.state == "rollback-failed":
            raise LiveError("a rollback of this change failed half way: run `kvmnet rollback` "
                            f"again (errors: {'; '.join(j.errors)})")
        if j.state in ("changing", "checking") and not found.from_disk:
            raise LiveError("apply is still changing or checking the host: confirm when it "
                            "has finished")
        last = end(root, j, "confirmed", "kvmnet confirm")
    watchdog.stop(root, j.txid)
    return last
