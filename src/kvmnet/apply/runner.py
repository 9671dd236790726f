"""apply: run a Plan's actions in order through a Backend.

Apply consumes only a Plan. Each action kind has one handler (HANDLERS, a
table, split by resource kind like kvmnet.plan); every libvirt write goes
through the backend, which counts it. Host-side actions marked `skipped` are
reported, never run. A kind without a handler is a PlanError before anything
runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kvmnet.apply import firewalls, forwards, guests, host, networks, overlay
from kvmnet.apply.bridge.options import HostOptions
from kvmnet.apply.step import Handler, Result, Step
from kvmnet.apply.together import Shown, run_length, run_together
from kvmnet.backend.base import Backend
from kvmnet.errors import LiveError, PlanError
from kvmnet.model.live import LiveState
from kvmnet.plan import Action, Plan

__all__ = ["HANDLERS", "Progress", "Report", "Result", "check_allowed", "run"]

HANDLERS: dict[str, Handler] = {
    "network.create": networks.create,
    "network.adopt": networks.adopt,
    "network.redefine": networks.redefine,
    "network.update": networks.update,
    "network.start": networks.start,
    "network.autostart": networks.autostart,
    "network.remove": networks.remove,
    "nic.attach": guests.attach,
    "nic.update": guests.update,
    "nic.detach": guests.detach,
    "nwfilter.define": firewalls.define,
    "nwfilter.redefine": firewalls.redefine,
    "nwfilter.remove": firewalls.remove,
    "nic.adopt": guests.adopt,
    "nic.vlans": guests.vlans,
    "host.vlans": guests.vlan_hook,
    "host.bridge": host.bridge,
    "host.names": host.names,
    "host.resolved": host.resolved,
    "firewall.sync": forwards.sync,
    # kvmnet.model.overlay.Op: one northbound transaction each
    "ovn.create": overlay.change,
    "ovn.update": overlay.change,
    "ovn.remove": overlay.change,
    "ovn.adopt": overlay.change,
}


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    writes: int = 0

    @property
    def ok(self) -> bool:
        return all(r.status != "failed" for r in self.results)


Progress = Callable[[int, int, Action, Result | None], None]


def check_allowed(plan: Plan, allow_destroy: bool) -> None:
    """Refuse the whole plan (before any write) when it removes what guests use without
    --allow-destroy, or holds an action apply has no handler for."""
    unknown = sorted({a.kind for a in plan.actions if a.kind not in HANDLERS})
    if unknown:
        raise PlanError(f"the plan holds actions apply does not know: {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(HANDLERS))})")
    blocked = [a for a in plan.actions if a.needs_allow_destroy and not allow_destroy]
    if blocked:
        names = "; ".join(a.summary for a in blocked)
        raise PlanError(f"refusing to remove networks with guests attached ({names}): "
                        "detach the guests first, or pass --allow-destroy")


def run(plan: Plan, backend: Backend, live: LiveState, allow_destroy: bool = False,
        progress: Progress | None = None, netns: str | None = None,
        host: HostOptions | None = None) -> Report:
    """Run every action in order; stop at the first failure (what is done stays done: a
    second apply finishes the job, since plan only lists what still differs).
    `host.parallel` > 1: runs of independent network creates go to that many threads
    (kvmnet.apply.together), with the same results and the same stop."""
    check_allowed(plan, allow_destroy)
    report = Report()
    start_writes = len(backend.writes)
    actions, total = plan.actions, len(plan.actions)
    workers = host.parallel if host else 1
    step = Step(backend, live, netns, host)
    try:
        i = 0
        while i < total and report.ok:
            n = run_length(actions, i, workers)
            shown = _shown(progress, i, total)
            if n == 1:
                shown(0, actions[i], None)
                got = [_run_one(actions[i], step)]
                shown(0, actions[i], got[0])
            else:
                got = run_together(actions[i:i + n], step, workers, _run_one, shown)
            report.results.extend(got)
            i += n
    finally:
        step.close()
    report.writes = len(backend.writes) - start_writes
    return report


def _shown(progress: Progress | None, offset: int, total: int) -> Shown:
    """progress, told an action's place in the run that starts at `offset`."""
    def shown(k: int, a: Action, res: Result | None) -> None:
        if progress:
            progress(offset + k + 1, total, a, res)
    return shown


def _run_one(action: Action, step: Step) -> Result:
    if action.skipped:
        return Result(action, "skipped", 0.0, action.skipped)
    t0 = time.monotonic()
    try:
        msg = HANDLERS[action.kind](action, step)
    except LiveError as e:
        return Result(action, "failed", time.monotonic() - t0, str(e))
    return Result(action, "done", time.monotonic() - t0, msg)
