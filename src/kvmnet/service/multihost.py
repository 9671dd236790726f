"""Many hypervisors from one spec: plan and apply each host's share concurrently.

A spec with `hosts:` is split per host (kvmnet.spec.hosts.split); each share is
planned against its host's own URI exactly as a single-host spec is
(ops.plan_spec) and applied by apply.run, in a bounded thread pool. The OVN
northbound part (overlay networks, spec.ovn) is one more target, planned and
applied once. Every target ends in an Outcome: a plan, a report, or the error
that stopped it; one target failing or unreachable never stops the others.

An apply Session holds each target's connection and apply lock (the same lock
a single-host apply takes on that URI) from its plan to the end of its apply,
so what runs is what was shown.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any

from kvmnet.apply.bridge.options import HostOptions
from kvmnet.apply.runner import Report, Result, check_allowed, run
from kvmnet.backend.libvirt import Connection
from kvmnet.errors import KvmnetError, Problem, SpecError
from kvmnet.model.live import HostState, LiveState
from kvmnet.model.spec import Ovn, Spec
from kvmnet.plan import Action
from kvmnet.service.ops import Planned, plan_spec
from kvmnet.spec.hosts import floating, guest_hosts, ovn_share, split
from kvmnet.spec.load import Positions

WORKERS = 8          # hosts planned or applied at once
OVN = "ovn"          # the northbound target's kind (its name is not a host name)

Opener = Callable[[str], Connection]
Progress = Callable[[str, int, int, Action, Result | None], None]


@dataclass(frozen=True)
class Target:
    """One unit of work: a host's share of the spec, or the OVN northbound part."""

    name: str
    uri: str
    spec: Spec
    kind: str = "host"            # host | ovn
    netns: str | None = None
    ovn: Ovn | None = None


@dataclass
class Outcome:
    target: Target
    planned: Planned | None = None
    report: Report | None = None
    error: str | None = None              # why this target stopped (the others go on)
    problems: list[Problem] = field(default_factory=list)   # plan-time errors, if any
    plan_s: float = 0.0
    apply_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.report is not None and not self.report.ok)

    @property
    def changes(self) -> bool:
        return self.planned is not None and self.planned.plan.changes

    @property
    def writes(self) -> int:
        return self.report.writes if self.report is not None else 0


@dataclass(frozen=True)
class Summary:
    hosts: int
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    failed: tuple[str, ...]
    applied: tuple[str, ...]
    writes: int
    seconds: float
    ovn: str | None = None                # changed | unchanged | failed (None: no ovn:)
    unplaced: tuple[str, ...] = ()        # floating guests defined on none of the hosts read

    @property
    def failures(self) -> int:
        return len(self.failed) + (self.ovn == "failed")

    @property
    def changes(self) -> bool:
        return bool(self.changed) or self.ovn == "changed"

    def as_dict(self) -> dict[str, object]:
        return {"hosts": self.hosts, "changed": list(self.changed),
                "unchanged": list(self.unchanged), "failed": list(self.failed),
                "applied": list(self.applied), "ovn": self.ovn, "writes": self.writes,
                "seconds": round(self.seconds, 3), "unplaced_guests": list(self.unplaced)}


def select(spec: Spec, only: Sequence[str] = ()) -> list[str]:
    """The hosts to work on, in spec order; unknown names are an error (did you mean)."""
    for name in only:
        if name not in spec.hosts:
            close = difflib.get_close_matches(name, list(spec.hosts), n=1)
            raise KvmnetError(f"--host {name}: no such host in the spec" + (
                f"; did you mean {close[0]}?" if close else
                f"; its hosts are {', '.join(spec.hosts) or '(none)'}"))
    return [h for h in spec.hosts if not only or h in only]


def targets(spec: Spec, only: Sequence[str] = ()) -> list[Target]:
    """A target per selected host, then one for OVN northbound (always, when the spec
    has ovn:, since the overlay networks and ports are shared by all hosts)."""
    shares = split(spec)
    out = [Target(h, spec.hosts[h].uri, shares[h], netns=spec.hosts[h].netns)
           for h in select(spec, only)]
    ovn = ovn_share(spec)
    if ovn is not None and ovn.ovn is not None:
        out.append(Target("OVN northbound", ovn.ovn.northbound, ovn, OVN, ovn=ovn.ovn))
    return out


class Session:
    """Plan (then apply) every target; holds connections and locks until closed."""

    def __init__(self, spec: Spec, pos: Positions, file: str, *, only: Sequence[str] = (),
                 adopt: frozenset[str] = frozenset(), scope: tuple[str, ...] = (),
                 lock_wait: float | None = None, workers: int = WORKERS,
                 opener: Opener = Connection.open,
                 on_wait: Callable[[str], None] | None = None) -> None:
        """lock_wait: None for a plan (no locks); seconds to wait for an apply's locks."""
        self.spec, self.pos, self.file = spec, pos, file
        self.adopt, self.scope = adopt, scope
        self.lock_wait, self.workers, self.opener, self.on_wait = (
            lock_wait, max(1, workers), opener, on_wait)
        self.outcomes = [Outcome(t) for t in targets(spec, only)]
        self.floating = floating(spec)
        self._conns: dict[str, Connection] = {}
        self._stacks: list[ExitStack] = []     # a target's connection and lock
        self._mutex = threading.Lock()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._mutex:
            stacks, self._stacks = self._stacks, []
        for stack in reversed(stacks):
            stack.close()

    @property
    def hosts(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.target.kind == "host"]

    @property
    def ovn(self) -> Outcome | None:
        return next((o for o in self.outcomes if o.target.kind == OVN), None)

    # -- plan --------------------------------------------------------------------
    def plan(self) -> list[Outcome]:
        self._each(self._plan_one, self.outcomes)
        return self.outcomes

    def _plan_one(self, o: Outcome) -> None:
        t = o.target
        t0 = time.monotonic()
        try:
            conn = self._connect(t)
            if t.ovn is not None:
                o.planned = self._plan_ovn(t, conn)
            else:
                p = plan_spec(t.spec, self.pos, self.file, conn, self.adopt, t.netns, [],
                              self.scope)
                o.planned = self._quiet(t, p)
        finally:
            o.plan_s = time.monotonic() - t0

    def _connect(self, t: Target) -> Connection:
        stack = ExitStack()
        with self._mutex:
            self._stacks.append(stack)
        if t.ovn is not None:  # no libvirt here: a Connection only counts NB transactions
            conn = Connection(f"ovn-nb:{t.uri}", None)
        else:
            conn = self.opener(t.uri)
            stack.callback(conn.close)
        self._conns[t.name] = conn
        if self.lock_wait is not None and not conn.is_test:
            from kvmnet.backend.lock import apply_lock

            stack.enter_context(apply_lock(conn.uri, self.lock_wait, self.on_wait))
        return conn

    def _plan_ovn(self, t: Target, conn: Connection) -> Planned:
        """The overlay part against northbound alone (no domains there, so plan's
        'guest is not defined' warnings say nothing and are dropped)."""
        from kvmnet.backend.ovsdb import read_nb
        from kvmnet.plan import make_plan

        assert t.ovn is not None
        live = LiveState(conn.uri, {}, {}, HostState(readable=False), ovn=read_nb(t.ovn))
        plan = make_plan(t.spec, live, self.adopt, self.scope)
        found = [Problem(self.pos.file_of(f.path, self.file),
                         *self.pos.find(f.path, key=len(f.path) <= 2),
                         f"{'.'.join(map(str, f.path))}: {f.message}", f.severity)
                 for f in plan.findings
                 if not (f.severity == "warning" and f.path[:1] == ("guests",)
                         and len(f.path) == 2)]
        errs = [p for p in found if p.severity == "error"]
        if errs:
            raise SpecError(errs + [p for p in found if p.severity == "warning"])
        return Planned(t.spec, live, plan, found)

    def _quiet(self, t: Target, p: Planned) -> Planned:
        """A floating guest (no hosts:) that is not defined on this host is simply
        elsewhere: drop plan's 'not defined' warning. One defined here on a host
        without all its networks is left alone, and said so."""
        away = tuple(f"guests.{g}: " for g in self.floating
                     if g in t.spec.guests and g not in p.live.domains)
        warnings = [w for w in p.warnings
                    if not (w.severity == "warning" and away and w.message.startswith(away))]
        for g in sorted(self.floating):
            if g in p.live.domains and g not in t.spec.guests:
                warnings.append(Problem(
                    self.pos.file_of(("guests", g), self.file),
                    *self.pos.find(("guests", g), key=True),
                    f"guests.{g}: {g} is defined on {t.name}, which lacks some of its "
                    "networks: its NICs are left alone there", "warning"))
        return replace(p, warnings=warnings)

    def unplaced(self) -> tuple[str, ...]:
        """Floating guests whose domain none of their possible hosts has (all read)."""
        live = {o.target.name: o.planned.live for o in self.hosts if o.planned is not None}
        out = []
        for g in sorted(self.floating):
            homes = guest_hosts(self.spec, g)
            if homes and all(h in live for h in homes) and not any(
                    g in live[h].domains for h in homes):
                out.append(g)
        return tuple(out)

    # -- apply -------------------------------------------------------------------
    def refuse_unsafe(self, allow_destroy: bool) -> None:
        """A target whose plan removes networks with guests attached fails (before
        anyone is asked), unless --allow-destroy; the others go on."""
        def one(o: Outcome) -> None:
            assert o.planned is not None
            check_allowed(o.planned.plan, allow_destroy)

        for o in self.pending():
            self._guard(one, o)

    def pending(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.changes and not o.failed]

    def apply(self, allow_destroy: bool = False, progress: Progress | None = None,
              host: HostOptions | None = None) -> list[Outcome]:
        def one(o: Outcome) -> None:
            t, p = o.target, o.planned
            assert p is not None
            cb = None if progress is None else (
                lambda i, n, a, r: progress(t.name, i, n, a, r))
            t0 = time.monotonic()
            try:
                o.report = run(p.plan, self._conns[t.name], p.live, allow_destroy, cb,
                               t.netns, host)
            finally:
                o.apply_s = time.monotonic() - t0
            bad = next((r for r in o.report.results if r.status == "failed"), None)
            if bad is not None:
                o.error = (f"{bad.action.kind} {bad.action.target} failed: {bad.message}; "
                           "what ran before stays done")

        self._each(one, self.pending())
        return self.outcomes

    def summary(self, seconds: float) -> Summary:
        hosts, ovn = self.hosts, self.ovn
        return Summary(
            len(hosts),
            tuple(o.target.name for o in hosts if o.changes and not o.failed),
            tuple(o.target.name for o in hosts if o.planned is not None and not o.changes
                  and not o.failed),
            tuple(o.target.name for o in hosts if o.failed),
            tuple(o.target.name for o in hosts if o.report is not None and o.report.ok),
            sum(o.writes for o in self.outcomes), seconds,
            None if ovn is None else status(ovn), self.unplaced())

    # -- the pool ----------------------------------------------------------------
    def _each(self, fn: Callable[[Outcome], None], items: list[Outcome]) -> None:
        if not items:
            return
        pool = ThreadPoolExecutor(max_workers=min(self.workers, len(items)),
                                  thread_name_prefix="kvmnet-host")
        try:
            for f in [pool.submit(self._guard, fn, o) for o in items]:
                f.result()
        finally:  # Ctrl-C: hosts not started yet are not started; running ones finish
            pool.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _guard(fn: Callable[[Outcome], Any], o: Outcome) -> None:
        """Run fn; whatever stops this target is recorded on it, never raised."""
        try:
            fn(o)
        except SpecError as e:
            o.problems = list(e.problems)
            n = sum(1 for p in e.problems if p.severity == "error")
            o.error = f"the plan has {n} error(s)"
        except KvmnetError as e:
            o.error = str(e)
        except Exception as e:  # noqa: BLE001 - one host's surprise must not hide the rest
            o.error = f"unexpected {type(e).__name__}: {e}"


def status(o: Outcome) -> str:
    return "failed" if o.failed else "changed" if o.changes else "unchanged"
