"""apply's runner on the fake backend: one handler per action kind, refusals before any
write, the first failure stops the run, skipped actions are reported and not run."""

from __future__ import annotations

import pytest

from kvmnet.apply.runner import HANDLERS, run
from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.read import read_state
from kvmnet.errors import PlanError
from kvmnet.model.spec import Spec
from kvmnet.plan import Action, Plan, make_plan
from lab.plancases import planner_kinds

SPEC = Spec.model_validate({"networks": {
    "n1": {"mode": "nat", "ipv4": {"address": "10.9.0.1/24"}},
    "n2": {"mode": "isolated", "autostart": False, "ipv4": {"address": "10.9.1.1/24"}}}})


def test_every_kind_the_planner_emits_has_a_handler() -> None:
    kinds = planner_kinds()
    assert len(kinds) >= 16 and "ovn.adopt" in kinds and "network.update" in kinds
    assert kinds == set(HANDLERS)


def _plan(fake: FakeBackend, spec: Spec = SPEC) -> Plan:
    return make_plan(spec, read_state(fake))


def test_apply_then_nothing_to_do() -> None:
    fake = FakeBackend()
    report = run(_plan(fake), fake, read_state(fake))
    assert report.ok and [r.status for r in report.results] == ["done", "done"]
    assert fake.writes == ["define network n1", "start network n1", "autostart network n1",
                           "define network n2", "start network n2"]
    assert report.writes == 5
    assert _plan(fake).actions == ()


def test_an_unknown_kind_is_refused_before_any_write() -> None:
    fake = FakeBackend()
    plan = _plan(fake)
    bad = Plan((*plan.actions, Action("network.frobnicate", "network/n1", "live", "x")))
    with pytest.raises(PlanError, match="does not know: network.frobnicate"):
        run(bad, fake, read_state(fake))
    assert fake.writes == []


def test_removal_with_guests_is_refused_before_any_write() -> None:
    fake = FakeBackend()
    run(_plan(fake), fake, read_state(fake))
    fake.load_domain("<domain><name>vm</name><devices><interface type='network'>"
                     "<mac address='52:54:00:00:00:09'/><source network='n2'/></interface>"
                     "</devices></domain>", running=True)
    fake.writes.clear()
    before = fake.snapshot()
    only_n1 = Spec.model_validate({"networks": {"n1": SPEC.networks["n1"].model_dump()}})
    plan = _plan(fake, only_n1)
    assert [(a.kind, a.needs_allow_destroy) for a in plan.actions] == [
        ("network.remove", True)]
    with pytest.raises(PlanError, match="refusing to remove networks with guests"):
        run(plan, fake, read_state(fake))
    assert fake.writes == [] and fake.snapshot() == before
    assert run(plan, fake, read_state(fake), allow_destroy=True).ok
    assert fake.writes == ["stop network n2", "undefine network n2"]


def test_the_first_failure_stops_the_run_and_a_second_apply_finishes() -> None:
    fake = FakeBackend(refuse={"start network n1": "dnsmasq failed to start"})
    report = run(_plan(fake), fake, read_state(fake))
    assert not report.ok
    assert [(r.action.target, r.status) for r in report.results] == [
        ("network/n1", "failed")]
    assert "defined but not running" in report.results[0].message
    assert report.writes == 2 and "n2" not in fake.networks
    fake.refuse.clear()
    plan = _plan(fake)
    assert [a.kind for a in plan.actions] == ["network.start", "network.autostart",
                                              "network.create"]
    assert run(plan, fake, read_state(fake)).ok and _plan(fake).actions == ()


def test_skipped_actions_are_reported_not_run() -> None:
    fake = FakeBackend()
    host = Action("host.bridge", "host/br0", "host", "create br0", skipped="test:///")
    report = run(Plan((host,)), fake, read_state(fake))
    assert [(r.status, r.message) for r in report.results] == [("skipped", "test:///")]
    assert fake.writes == []
