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
from kvmnet.apply.step import Handler, Step
from kvmnet.backend.base import Backend
from kvmnet.errors import LiveError, PlanError
from kvmnet.model.live import LiveState
from kvmnet.plan import Action, Plan

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
class Result:
    action: Action
    status: str              # done | skipped | failed
    seconds: float = 0.0
    message: str = ""

    def as_dict(self) -> dict[str, object]:
        return {**self.action.as_dict(), "status": self.status,
                "seconds": round(self.seconds, 3), "message": self.message}


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
    """Run every action; stop at the first failure (what is done stays done: a
    second apply finishes the job, since plan only lists what still differs)."""
    check_allowed(plan, allow_destroy)
    report = Report()
    start_writes = len(backend.writes)
    total = len(plan.actions)
    step = Step(backend, live, netns, host)
    try:
        for i, action in enumerate(plan.actions, 1):
            if progress:
                progress(i, total, action, None)
            res = _run_one(action, step)
            report.results.append(res)
            if progress:
                progress(i, total, action, res)
            if res.status == "failed":
                break
    finally:
        step.close()
    report.writes = len(backend.writes) - start_writes
    return report


def _run_one(action: Action, step: Step) -> Result:
    if action.skipped:
        return Result(action, "skipped", 0.0, action.skipped)
    t0 = time.monotonic()
    try:
        msg = HANDLERS[action.kind](action, step)
    except LiveError as e:
        return Result(action, "failed", time.monotonic() - t0, str(e))
    return Result(action, "done", time.monotonic() - t0, msg)
