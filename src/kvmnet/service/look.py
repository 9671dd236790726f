"""One look at a host, or at every host of a spec with hosts:, for `kvmnet serve`: the
data of show, leases, doctor and graph, and with a spec the plan, each in the shape
its command's --json has (kvmnet.service.views). A spec is planned exactly as `kvmnet
plan` plans it (ops.plan_spec; multihost.Session for hosts:), and its live state is
the one the other views show, so a page never mixes two reads. Nothing is written.

Whatever stops one host (libvirt down, a spec error) is kept on that host's look as a
message; the others are still looked at."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvmnet.errors import KvmnetError, SpecError

if TYPE_CHECKING:
    from kvmnet.backend.base import Backend
    from kvmnet.model.live import LiveState
    from kvmnet.model.spec import Spec
    from kvmnet.plan import Plan
    from kvmnet.render.graph import Graph
    from kvmnet.spec.load import Positions


@dataclass(frozen=True)
class Source:
    """What to look at: a libvirt URI, or a spec (its hosts:, or one host at `uri`)."""

    uri: str | None = None
    spec: Path | None = None
    netns: str | None = None
    root: Path = Path("/")
    doctor: bool = True
    scope: tuple[str, ...] = ()     # as plan's --scope: which unlisted networks it removes


@dataclass(frozen=True)
class HostLook:
    name: str                                  # the spec's host name; "" for one host
    uri: str
    show: dict[str, Any] | None = None         # `kvmnet show --json`
    leases: dict[str, Any] | None = None       # `kvmnet leases --json`
    doctor: dict[str, Any] | None = None       # `kvmnet doctor --json`
    plan: dict[str, Any] | None = None         # `kvmnet plan --json` (this host's part)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)   # views.network_details
    vlans: dict[str, list[str]] = field(default_factory=dict)          # MAC -> its VLANs
    graph: Graph | None = None
    drift: frozenset[str] = frozenset()        # graph node ids and MACs the plan changes
    error: str | None = None


@dataclass(frozen=True)
class Look:
    hosts: tuple[HostLook, ...]
    file: str | None = None
    plan: dict[str, Any] | None = None         # hosts: specs: the whole `plan --json`
    problems: tuple[str, ...] = ()             # the spec's errors, FILE:LINE:COL: ...
    taken: float = 0.0                         # time.time() of the read
    seconds: float = 0.0                       # how long the look took

    @property
    def version(self) -> str:
        """Changes when anything shown changes (the page refreshes on it)."""
        data = [self.problems, self.plan] + [
            (h.name, h.show, h.leases, h.doctor, h.plan, h.error) for h in self.hosts]
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def host(self, name: str) -> HostLook | None:
        return next((h for h in self.hosts if h.name == name), None)


def look(src: Source) -> Look:
    t0 = time.monotonic()
    file = str(src.spec) if src.spec else None
    try:
        if src.spec is None:
            hosts: tuple[HostLook, ...] = (_one(src, None),)
            whole = None
        else:
            from kvmnet.service.ops import load_spec

            spec, pos, warnings = load_spec(src.spec)
            if spec.hosts:
                hosts, whole = _many(src, spec, pos, warnings)
            else:
                hosts, whole = (_one(src, (spec, pos, warnings)),), None
    except SpecError as e:
        return Look((), file, None, tuple(_problem_text(p) for p in e.problems), time.time(),
                    time.monotonic() - t0)
    return Look(hosts, file, whole, (), time.time(), time.monotonic() - t0)


def _problem_text(p: Any) -> str:
    where = f"{p.file}:{p.line}:{p.col}" if p.line else p.file
    return f"{where}: {p.severity}: {p.message}"


def _one(src: Source, loaded: tuple[Spec, Positions, list[Any]] | None,
         name: str = "", uri: str | None = None) -> HostLook:
    """One host: read (and plan) on one connection; a failure becomes the look's error."""
    from kvmnet.backend.libvirt import connect
    from kvmnet.service.ops import needs_libvirt, plan_spec, read_live
    from kvmnet.service.views import plan_data

    target = uri or src.uri
    try:
        with connect(target, loaded is None or needs_libvirt(loaded[0])) as conn:
            plan = None
            if loaded is not None:
                spec, pos, warnings = loaded
                p = plan_spec(spec, pos, str(src.spec), conn, frozenset(), src.netns,
                              warnings, src.scope, src.root)
                live, plan = p.live, plan_data(p.plan, conn.uri, str(src.spec), p.warnings)
                drift = _drift(p.plan)
            else:
                live, drift = read_live(conn, src.netns, src.root), frozenset()
            got = _views(conn, live, src, name, loaded[0] if loaded else None)
    except SpecError as e:
        return HostLook(name, target or "", error="; ".join(map(_problem_text, e.problems)))
    except KvmnetError as e:
        return HostLook(name, target or "", error=str(e))
    except Exception as e:  # noqa: BLE001 - the page stays up and says what happened
        return HostLook(name, target or "", error=f"unexpected {type(e).__name__}: {e}")
    return HostLook(**{**got, "plan": plan, "drift": drift})


def _views(conn: Backend, live: LiveState, src: Source, name: str,
           spec: Spec | None) -> dict[str, Any]:
    from kvmnet.backend.neigh import guest_addresses
    from kvmnet.service import views

    rows = guest_addresses(conn, live, None, src.netns)
    return {"name": name, "uri": live.uri, "show": views.show_data(live, rows),
            "leases": views.leases_data(live.uri, rows),
            "doctor": _doctor(src, live.uri, spec) if src.doctor else None,
            "details": views.network_details(live), "vlans": views.nic_vlans(live),
            "graph": views.live_graph(live, rows)}


def _doctor(src: Source, uri: str, spec: Spec | None) -> dict[str, Any]:
    from kvmnet.doctor.run import doctor
    from kvmnet.service.views import doctor_data

    try:
        facts, checks = doctor(uri, spec, str(src.spec or "FILE"), src.netns)
    except KvmnetError as e:
        return {"kvmnet": 1, "uri": uri, "netns": src.netns, "ok": False, "checks": [],
                "error": str(e)}
    return doctor_data(facts.uri, src.netns, checks)


def _drift(plan: Plan) -> frozenset[str]:
    """What the plan would change, as the topology's node ids (net:NAME, guest:NAME,
    br:NAME) and the MACs of NICs it attaches, detaches or changes."""
    out: set[str] = set()
    for a in plan.actions:
        if a.skipped:
            continue
        kind, _, rest = a.target.partition("/")
        obj, _, mac = rest.partition("/")
        prefix = {"network": "net", "guest": "guest", "host": "br"}.get(kind)
        if prefix:
            out.add(f"{prefix}:{obj}")
        if mac:
            out.add(mac)
    return frozenset(out)


def _many(src: Source, spec: Spec, pos: Positions,
          warnings: list[Any]) -> tuple[tuple[HostLook, ...], dict[str, Any]]:
    """A spec with hosts:: planned as `kvmnet plan` plans it (every host at once), then
    each host's views on the live state its plan read."""
    from kvmnet.backend.libvirt import connect
    from kvmnet.service.multihost import WORKERS, Session
    from kvmnet.service.views import hosts_plan_data, outcome_data

    t0 = time.monotonic()
    with Session(spec, pos, str(src.spec), scope=src.scope, workers=WORKERS) as s:
        s.plan()
        whole = hosts_plan_data(s, s.summary(time.monotonic() - t0), str(src.spec), warnings)
    out = []
    for o in s.hosts:
        t = o.target
        if o.planned is None:
            out.append(HostLook(t.name, t.uri, plan=outcome_data(o, str(src.spec)),
                                error=o.error or "not planned"))
            continue
        hsrc = Source(t.uri, src.spec, t.netns, src.root, src.doctor, src.scope)
        try:
            with connect(t.uri) as conn:
                got = _views(conn, o.planned.live, hsrc, t.name, t.spec)
        except Exception as e:  # noqa: BLE001 - one host's surprise must not hide the rest
            out.append(HostLook(t.name, t.uri, error=str(e) if isinstance(e, KvmnetError)
                                else f"unexpected {type(e).__name__}: {e}"))
            continue
        out.append(HostLook(**{**got, "plan": outcome_data(o, str(src.spec)),
                               "drift": _drift(o.planned.plan)}))
    return tuple(out), whole
