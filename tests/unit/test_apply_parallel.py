"""apply --parallel on the fake backend: independent network creates run on threads, and
the host ends as a one-at-a-time apply leaves it, also when an action fails mid-way.

The fake's start waits a few ms (libvirtd's start is its slow call), so the threads
really overlap; the failure test holds the failing start until the creates after it are
under way, so that there is something to undo.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kvmnet.apply.bridge.options import HostOptions
from kvmnet.apply.runner import Report, run
from kvmnet.apply.together import run_length
from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.read import read_state
from kvmnet.errors import PlanError
from kvmnet.model.spec import Spec
from kvmnet.plan import Action, Plan, make_plan
from lab.plancases import APPLIED_KINDS, Case, case_dirs


@dataclass
class SlowFake(FakeBackend):
    """Starts take `delay` s outside the fake's lock; `hold[name]` keeps that network's
    start waiting until the test's condition holds (or 5 s went by)."""

    delay: float = 0.003
    hold: dict[str, Callable[[SlowFake], bool]] = field(default_factory=dict)
    entered: list[str] = field(default_factory=list)   # starts begun, in order
    most: int = 0                                      # the most starts seen at once
    _now: int = 0
    _count: threading.Lock = field(default_factory=threading.Lock)

    def start_network(self, name: str) -> None:
        with self._count:
            self.entered.append(name)
            self._now += 1
            self.most = max(self.most, self._now)
        time.sleep(self.delay)
        deadline = time.monotonic() + 5
        while name in self.hold and not self.hold[name](self) and time.monotonic() < deadline:
            time.sleep(0.001)
        try:
            super().start_network(name)
        finally:
            with self._count:
                self._now -= 1


def _opts(n: int) -> HostOptions:
    return HostOptions(Path("/"), parallel=n)


def _outcome(report: Report) -> list[tuple[str, str, str]]:
    return [(r.action.kind, r.action.target, r.status) for r in report.results]


def _applies(case: Case, plan: Plan) -> bool:
    return (not plan.errors and all(a.skipped or a.kind.startswith(APPLIED_KINDS)
                                    for a in plan.actions)
            and (bool(case.args.get("allow_destroy"))
                 or not any(a.needs_allow_destroy for a in plan.actions)))


def _applied_cases() -> list[Path]:
    """The plan cases whose plan runs on the fake (the others are errors, refusals or
    kinds the fake does not apply: test_plan_cases says why); chosen when the tests are
    collected, so none of them is a skip."""
    out = []
    for folder in case_dirs():
        case = Case.load(folder)
        if _applies(case, case.plan(case.backend())):
            out.append(folder)
    return out


APPLIED = _applied_cases()


def test_most_plan_cases_are_applied_in_parallel() -> None:
    assert len(APPLIED) >= 40, [p.name for p in APPLIED]


@pytest.mark.parametrize("folder", APPLIED, ids=lambda p: p.name)
def test_every_plan_case_ends_the_same_in_parallel(folder: Path) -> None:
    case = Case.load(folder)
    serial, together = case.backend(), case.backend()
    fast = SlowFake(**{k: getattr(together, k) for k in ("uri", "networks", "domains",
                                                         "writes", "nwfilters")})
    plan = case.plan(serial)
    allow = bool(case.args.get("allow_destroy"))
    one = run(plan, serial, case.live_state(serial), allow, host=_opts(1))
    many = run(case.plan(fast), fast, case.live_state(fast), allow, host=_opts(4))
    assert one.ok and many.ok
    assert _outcome(many) == _outcome(one)
    assert fast.snapshot() == serial.snapshot()
    assert sorted(fast.writes) == sorted(serial.writes) and many.writes == one.writes


SPEC = Spec.model_validate({"networks": {
    f"n{i}": {"mode": "nat", "ipv4": {"address": f"10.9.{i}.1/24",
                                      "dhcp": f"10.9.{i}.100-10.9.{i}.199"}}
    for i in range(8)}})


def _plan(fake: FakeBackend) -> Plan:
    return make_plan(SPEC, read_state(fake))


def test_creates_overlap_and_are_reported_in_plan_order() -> None:
    fake = SlowFake(delay=0.02)
    seen: list[tuple[int, str, str | None]] = []
    report = run(_plan(fake), fake, read_state(fake), host=_opts(3),
                 progress=lambda i, n, a, r: seen.append((i, a.target, r and r.status)))
    assert report.ok and report.writes == 24
    assert fake.most == 3                   # three starts at once, never more
    assert [t for _i, t, s in seen if s] == [f"network/n{i}" for i in range(8)]
    assert [i for i, _t, s in seen if s] == list(range(1, 9))
    assert _plan(fake).actions == ()


def test_parallel_1_is_one_action_at_a_time() -> None:
    fake = SlowFake()
    assert run(_plan(fake), fake, read_state(fake), host=_opts(1)).ok
    assert fake.most == 1
    assert fake.writes == [w for i in range(8) for w in (
        f"define network n{i}", f"start network n{i}", f"autostart network n{i}")]


def _snap(fake: FakeBackend, refuse: dict[str, str]) -> tuple[dict[str, Any], Report]:
    report = run(_plan(fake), fake, read_state(fake), host=_opts(1))
    return fake.snapshot(), report


def test_a_failure_mid_way_leaves_what_a_serial_apply_leaves() -> None:
    refuse = {"start network n2": "dnsmasq failed to start"}
    want, serial = _snap(FakeBackend(refuse=dict(refuse)), refuse)
    # n2's start fails once n3, n4 and n5 have begun theirs beside it; they finish only
    # after the runner has seen the failure: so what ran beside it is known exactly
    seen = threading.Event()
    beside = {"n3", "n4", "n5"}
    fake = SlowFake(refuse=dict(refuse), hold={
        "n2": lambda f: beside <= set(f.entered), **{n: lambda f: seen.is_set() for n in beside}})

    def progress(i: int, n: int, a: Action, r: Any) -> None:
        if r is not None and r.status == "failed":
            seen.set()

    report = run(_plan(fake), fake, read_state(fake), progress=progress, host=_opts(4))
    assert not report.ok and _outcome(report) == _outcome(serial) == [
        ("network.create", "network/n0", "done"), ("network.create", "network/n1", "done"),
        ("network.create", "network/n2", "failed")]
    assert fake.entered[:2] == ["n0", "n1"] and set(fake.entered[2:]) == {"n2", *beside}
    failed = report.results[-1].message
    assert "defined but not running" in failed
    assert "undone, as a one-at-a-time apply would not have made them: n3, n4, n5" in failed
    assert fake.snapshot() == want                     # n0, n1 up; n2 defined; no more
    fake.refuse.clear()
    assert run(_plan(fake), fake, read_state(fake), host=_opts(4)).ok
    assert _plan(fake).actions == ()


def test_only_what_this_apply_defined_is_undone() -> None:
    """A network whose define libvirt refused (another process took the name after plan
    read the host) is not this apply's: it stays."""
    fake = SlowFake(refuse={"start network n1": "no"},
                    hold={"n1": lambda f: "define network n2" in f.writes})
    plan = _plan(fake)
    fake.load_network("<network><name>n2</name><uuid>0b6f6c1e-3c52-4b6a-9d7e-1c2d3e4f5a6b"
                      "</uuid><bridge name='other2'/></network>")
    before = fake.snapshot()["networks"]["n2"]  # type: ignore[index]
    report = run(plan, fake, read_state(fake), host=_opts(3))
    assert _outcome(report)[-1] == ("network.create", "network/n1", "failed")
    assert "define network n2" in fake.writes and "undefine network n2" not in fake.writes
    undone = report.results[-1].message.partition("would not have made them: ")[2]
    assert "n2" not in undone.split(", ")          # (n3 may have run, and is undone)
    assert sorted(fake.networks) == ["n0", "n1", "n2"]
    assert fake.snapshot()["networks"]["n2"] == before  # type: ignore[index]


def test_only_runs_of_creates_go_together() -> None:
    acts = [Action("network.create", "network/a", "live", ""),
            Action("network.create", "network/b", "live", ""),
            Action("network.start", "network/c", "live", ""),
            Action("network.create", "network/d", "live", ""),
            Action("network.create", "network/e", "live", "", skipped="test:///"),
            Action("nic.attach", "guest/g/m", "live", "")]
    assert [run_length(acts, i, 4) for i in range(len(acts))] == [2, 1, 1, 1, 1, 1]
    assert [run_length(acts, i, 1) for i in range(len(acts))] == [1] * 6


def test_refusals_come_before_any_thread() -> None:
    fake = FakeBackend()
    bad = Plan((*_plan(fake).actions, Action("network.frobnicate", "network/x", "live", "")))
    with pytest.raises(PlanError):
        run(bad, fake, read_state(fake), host=_opts(4))
    assert fake.writes == []
