"""Host bridges without a kernel: the plan's host-side diff and refusals, the journal
records, the watchdog's rules and confirm/rollback with nothing pending. The live
refusal of a Wi-Fi port on a faked sysfs: test_wifi.py."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kvmnet.apply.bridge import journal, store, watchdog
from kvmnet.apply.bridge import transaction as hosttx
from kvmnet.apply.bridge.journal import Journal, Step
from kvmnet.apply.bridge.migrate import Addr, Link, Route
from kvmnet.errors import LiveError
from kvmnet.model.live import HostLink, HostRoute, HostState, LiveState
from kvmnet.model.spec import Spec
from kvmnet.plan import make_plan
from kvmnet.spec.load import load_text

SPEC = """\
host:
  bridges:
    br0:
      ports: [enp2s0]
      address: 192.168.1.1/24
      gateway: 192.168.1.254
      metric: 100
"""


def spec(text: str = SPEC) -> Spec:
    return load_text(text)[0]


def live(links: list[HostLink], routes: tuple[HostRoute, ...] = (), test: bool = False
         ) -> LiveState:
    host = HostState(links={x.name: x for x in links}, routes=routes, readable=not test)
    return LiveState("test:///default" if test else "qemu:///system", {}, {}, host,
                     is_test=test)


NIC = HostLink("enp2s0", 2, "", None, True, "52:54:00:aa:bb:cc",
               addresses=("192.168.1.1/24", "fe80::5054:ff:feaa:bbcc/64"))
DEFAULT = HostRoute("0.0.0.0/0", "enp2s0", "192.168.1.254", 100)


def test_a_nic_with_address_and_default_route_plans_one_migration() -> None:
    plan = make_plan(spec(), live([NIC], (DEFAULT,)))
    [a] = plan.actions
    assert (a.kind, a.target, a.impact, a.skipped) == ("host.bridge", "host/br0", "host", None)
    assert a.details == ("+ bridge br0: stp off, MAC 52:54:00:aa:bb:cc (enp2s0's current "
                         "MAC)", "~ enp2s0: enslave to br0",
                         "~ address 192.168.1.1/24: enp2s0 -> br0",
                         "~ route 0.0.0.0/0 via 192.168.1.254 metric 100: enp2s0 -> br0")
    assert a.host is not None and a.host.bridges["br0"].mac == "52:54:00:aa:bb:cc"
    assert plan.findings == ()


def test_the_bridge_is_pinned_to_the_ports_permanent_mac() -> None:
    """A NIC whose MAC was changed (a bond, a MAC set by hand) comes back at boot with its
    permanent one, and so must the bridge: the files apply writes pin the permanent MAC;
    a mac: in the spec wins over both."""
    nic = replace(NIC, mac="02:00:00:00:00:01", perm_mac="52:54:00:aa:bb:cc")
    [a] = make_plan(spec(), live([nic], (DEFAULT,))).actions
    assert a.details[0] == "+ bridge br0: stp off, MAC 52:54:00:aa:bb:cc (enp2s0's permanent MAC)"
    assert a.host is not None and a.host.bridges["br0"].mac == "52:54:00:aa:bb:cc"
    from kvmnet.render.hostconf import RENDERERS

    for name, render in RENDERERS.items():
        text = "".join(render(Spec(host=a.host)).values())
        assert "52:54:00:aa:bb:cc" in text, name
    pinned = spec(SPEC + '      mac: "52:54:00:12:34:56"\n')
    [a] = make_plan(pinned, live([nic], (DEFAULT,))).actions
    assert a.details[0] == "+ bridge br0: stp off, MAC 52:54:00:12:34:56 (the spec's mac)"


def test_migrated_host_plans_nothing() -> None:
    br = HostLink("br0", 3, "bridge", None, True, NIC.mac, addresses=("192.168.1.1/24",))
    nic = HostLink("enp2s0", 2, "", "br0", True, NIC.mac, addresses=NIC.addresses[1:])
    assert make_plan(spec(), live([br, nic])).actions == ()


def test_test_driver_only_shows_the_bridge() -> None:
    [a] = make_plan(spec(), live([], test=True)).actions
    assert a.skipped and "test:///" in a.skipped


@pytest.mark.parametrize(("link", "words"), [
    (None, "does not exist"),
    (HostLink("enp2s0", 2, "", None, True, wireless=True), "routed (mode: route) or NAT"),
    (HostLink("enp2s0", 2, "", "bond0", True), "already a port of bond0"),
])
def test_ports_that_cannot_be_bridged_are_errors(link: HostLink | None, words: str) -> None:
    plan = make_plan(spec(), live([link] if link else []))
    [f] = plan.errors
    assert f.path == ("host", "bridges", "br0", "ports", 0) and words in f.message


def test_an_address_only_on_the_nic_is_moved_with_a_warning() -> None:
    nic = HostLink("enp2s0", 2, "", None, True, addresses=("192.168.1.1/24", "10.9.9.9/8"))
    plan = make_plan(spec(), live([nic]))
    [w] = plan.findings
    assert w.severity == "warning" and "10.9.9.9/8" in w.message and "reboot" in w.message


JOURNAL = Journal(txid="t", state="waiting", steps=(), netns=None, apply_pid=None,
                  apply_start=None, root="/", created=0.0, timeout=3.0, deadline=0.0,
                  persisted=None, rollback_now=None, errors=())


def test_link_records_survive_json() -> None:
    link = Link("enp2s0", True, "", "52:54:00:aa:bb:cc", 1500, True, None,
                (Addr(2, "192.168.1.1", 24, "192.168.1.1", "192.168.1.255", "enp2s0"),),
                (Route(2, None, 0, gateway="192.168.1.254", priority=100,
                       metrics={"RTAX_MTU": 1400}),))
    j = replace(JOURNAL, steps=(Step(bridge="br0", links=(link,), files=()),))
    assert journal.JOURNAL.loads(journal.JOURNAL.dumps(j), "test").steps[0].links == (link,)


def test_watchdog_reasons() -> None:
    now = time.monotonic()
    assert watchdog._reason(replace(JOURNAL, deadline=now + 60)) is None
    assert "within 3 s" in (watchdog._reason(replace(JOURNAL, deadline=now - 1)) or "")
    assert watchdog._reason(replace(JOURNAL, deadline=now + 60,
                                    rollback_now="self-check failed")) == "self-check failed"
    me = replace(JOURNAL, deadline=now + 60, state="checking", apply_pid=os.getpid(),
                 apply_start=watchdog.start_time(os.getpid()))
    assert watchdog._reason(me) is None
    gone = replace(me, apply_start="0")
    assert "ended before its self-check" in (watchdog._reason(gone) or "")
    assert watchdog._reason(replace(gone, state="waiting")) is None  # self-check passed


def test_confirm_and_rollback_with_nothing_pending(tmp_path: Path) -> None:
    with pytest.raises(LiveError, match="nothing to confirm: no host change"):
        hosttx.confirm(tmp_path)
    assert hosttx.rollback(tmp_path) is None


def test_a_pending_journal_of_another_apply_blocks(tmp_path: Path) -> None:
    path = store.journal_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"txid": "other", "state": "waiting", "steps": []}))
    msg = str(hosttx.pending_error(tmp_path))
    assert f"kvmnet confirm --root {tmp_path}" in msg and "kvmnet rollback" in msg
    with pytest.raises(LiveError, match="still changing"):
        path.write_text(json.dumps({"txid": "other", "state": "changing", "steps": []}))
        hosttx.confirm(tmp_path)
