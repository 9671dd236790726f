"""Guests' VLANs from spec to plan, XML, kvmnet's record and the qemu hook (issue 20,
point 3), on live states built here: libvirt 11 (it sets `<vlan>` itself) and libvirt 9
(kvmnet sets the taps' VLANs, records them, and keeps its qemu hook)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from kvmnet.backend.vlan_hook import hook_text, ports_for, run_vlan_hook
from kvmnet.errors import RenderError
from kvmnet.model.live import HostState, LiveDomain, LiveNic, LiveState, NicRecord
from kvmnet.model.vlan import VlanLive, Vlans, entries_text
from kvmnet.parse.domain import KVMNET_NS, nic_records_xml, parse_nic_records, parse_nics
from kvmnet.plan import Action, Plan, make_plan
from kvmnet.render.guard import require_vlan
from kvmnet.render.interface import interface_xml, vlan_element
from kvmnet.spec.load import load_text

SPEC = """\
owner: o
host:
  bridges:
    br0: {ports: [eno1], vlan_filtering: true, vlans: [100, 200]}
networks:
  lan:
    mode: bridge
    bridge: br0
    portgroups:
      office: {vlan: 100, default: true}
guests:
  g:
    interfaces:
      - {bridge: br0, vlan: 100}
      - {network: lan, vlans: [100, 200], native: 200}
      - {network: lan}
"""


def spec():  # type: ignore[no-untyped-def]
    return load_text(SPEC, "t.yaml")[0]


def live(vl: VlanLive | None, nics: tuple[LiveNic, ...] = (), records=(),  # type: ignore[no-untyped-def]
         running: bool = False, live_nics: tuple[LiveNic, ...] = ()) -> LiveState:
    dom = LiveDomain("g", running, nics, live_nics, frozenset(r.mac for r in records),
                     tuple(records))
    return LiveState("qemu:///system", {}, {"g": dom}, HostState(readable=False), vlans=vl)


def test_vlan_xml_access_and_trunk_round_trip_through_libvirt_s_form() -> None:
    s = spec()
    for i, want in enumerate([Vlans((), 100), Vlans((100,), 200), Vlans((), 100)]):
        xml = interface_xml(s, "g", i)
        (nic,) = parse_nics(f"<domain><devices>{xml}</devices></domain>")
        assert nic.vlans == want
    assert '<vlan trunk="yes"><tag id="100"/><tag id="200" nativeMode="untagged"/></vlan>' \
        in interface_xml(s, "g", 1).replace("\n", "").replace("  ", "")
    assert "<vlan" not in interface_xml(s, "g", 0, vlan_xml=False)


@pytest.mark.parametrize("bad", [0, 4095, True, "100", -1, 10**9])
def test_a_vlan_id_is_checked_again_where_it_is_written(bad: object) -> None:
    with pytest.raises(RenderError):
        require_vlan(bad)
    with pytest.raises(ValueError):
        Vlans((), bad)  # type: ignore[arg-type]


def test_kvmnet_s_record_keeps_vlans_and_refuses_what_is_not_vlan_ids() -> None:
    recs = [NicRecord("52:54:00:00:00:01", "o", 0, Vlans((100, 200), None)),
            NicRecord("52:54:00:00:00:02", "o", 1, Vlans((200,), 100)),
            NicRecord("52:54:00:00:00:03", "o", 2)]
    assert parse_nic_records(nic_records_xml(recs)) == tuple(recs)
    for tagged in ("100;reboot", "0", "4095", "1e2", "100,,200", " 100", "200,100"):
        xml = f'<nics><nic mac="52:54:00:00:00:01" tagged="{tagged}"/></nics>'
        assert parse_nic_records(xml)[0].vlans is None, tagged


def test_libvirt_11_writes_vlan_xml_and_no_hook() -> None:
    p = make_plan(spec(), live(VlanLive(native=True, bridges={"br0": (True, 1)})))
    attach = [a for a in p.actions if a.kind == "nic.attach"]
    assert len(attach) == 3 and all("<vlan" in a.xml for a in attach)
    assert all(r.vlans is None for r in attach[-1].nic_records or ())
    assert not [a for a in p.actions if a.kind == "host.vlans"]


def test_libvirt_9_records_the_vlans_and_writes_the_hook() -> None:
    p = make_plan(spec(), live(VlanLive(native=False, bridges={"br0": (True, 1)})))
    attach = [a for a in p.actions if a.kind == "nic.attach"]
    assert all("<vlan" not in a.xml for a in attach)
    recs = {r.index: r.vlans for r in attach[-1].nic_records or ()}
    assert recs == {0: Vlans((), 100), 1: Vlans((100,), 200), 2: Vlans((), 100)}
    assert attach[0].details == ("+ VLANs access 100",)
    (hook,) = [a for a in p.actions if a.kind == "host.vlans"]
    assert hook.text == "install"
    # and none once it is there
    p = make_plan(spec(), live(VlanLive(native=False, bridges={"br0": (True, 1)},
                                        hook="ok")))
    assert not [a for a in p.actions if a.kind == "host.vlans"]


def guest_side(plan: Plan) -> list[Action]:
    """The plan's guest NICs and qemu hook (the network lan is not live here)."""
    return [a for a in plan.actions if a.kind.startswith(("nic.", "host.vlans"))]


def _running(vl: VlanLive) -> LiveState:
    """g running with its three NICs attached by kvmnet (libvirt 9) on taps vnet0-2."""
    attach = [a for a in make_plan(spec(), live(vl)).actions if a.kind == "nic.attach"]
    nics = parse_nics("<domain><devices>" + "".join(a.xml for a in attach)
                      + "</devices></domain>")
    taps = tuple(LiveNic(n.mac, n.type, n.source, n.model, f"vnet{i}", n.portgroup)
                 for i, n in enumerate(nics))
    return live(vl, nics, attach[-1].nic_records or (), True, taps)


def test_a_vlan_taken_off_a_tap_by_hand_is_drift_in_the_plan() -> None:
    ok = {"vnet0": Vlans((), 100).entries(), "vnet1": Vlans((100,), 200).entries(),
          "vnet2": Vlans((), 100).entries()}
    vl = VlanLive(native=False, bridges={"br0": (True, 1)}, ports=ok, hook="ok")
    st = _running(vl)
    assert not guest_side(make_plan(spec(), st))
    drifted = dict(ok, vnet1=frozenset({(100, False, False)}))
    st2 = LiveState(st.uri, {}, st.domains, st.host, vlans=VlanLive(
        native=False, bridges=vl.bridges, ports=drifted, hook="ok"))
    (a,) = guest_side(make_plan(spec(), st2))
    assert (a.kind, a.impact, a.set_vlans, a.vlans) == ("nic.vlans", "live", True,
                                                        Vlans((100,), 200))
    assert a.details == ("~ VLANs on tap vnet1 100 -> 100, 200 (pvid, untagged) (changed "
                         "outside kvmnet)",)


def test_a_changed_vlan_is_a_live_change_of_the_record_and_the_tap() -> None:
    vl = VlanLive(native=False, bridges={"br0": (True, 1)}, hook="ok")
    st = _running(vl)
    other = load_text(SPEC.replace("{bridge: br0, vlan: 100}", "{bridge: br0, vlan: 200}"),
                      "t.yaml")[0]
    (a,) = [a for a in guest_side(make_plan(other, st)) if a.kind != "nic.vlans"]
    assert a.kind == "nic.update" and a.impact == "live" and a.set_vlans
    assert a.details == ("~ VLANs access 100 -> access 200 (live)",)
    assert a.nic_records is not None
    assert {r.mac: r.vlans for r in a.nic_records}[str(a.mac)] == Vlans((), 200)


def test_a_vlan_on_a_live_bridge_without_vlan_filtering_is_refused() -> None:
    s = load_text(SPEC.replace("{bridge: br0, vlan: 100}", "{bridge: br1, vlan: 7}"),
                  "t.yaml")[0]
    p = make_plan(s, live(VlanLive(bridges={"br1": (False, 1), "br0": (True, 1)})))
    errs = [f for f in p.findings if "VLAN" in f.message]
    assert [f.path for f in errs] == [("guests", "g", "interfaces", 0, "vlan")], errs
    assert errs[0].message.startswith("bridge br1 on qemu:///system does not filter VLANs")
    # the same bridge made VLAN-aware by the spec itself: planned, not refused
    ok = load_text(SPEC.replace("{bridge: br0, vlan: 100}", "{bridge: br1, vlan: 7}")
                   .replace("host:\n  bridges:\n", "host:\n  bridges:\n    br1: {ports: "
                            "[eno2], vlan_filtering: true, vlans: [7]}\n"), "t.yaml")[0]
    p = make_plan(ok, live(VlanLive(bridges={"br1": (False, 1), "br0": (True, 1)})))
    assert not [f for f in p.findings if "VLAN" in f.message]


def test_the_hook_sets_only_what_kvmnet_recorded_and_checks_it() -> None:
    recs = nic_records_xml([NicRecord("52:54:00:00:00:01", "o", 0, Vlans((), 100)),
                            NicRecord("52:54:00:00:00:02", "o", 1)])
    dom = (f'<domain><metadata><kvmnet:nics xmlns:kvmnet="{KVMNET_NS}">'
           + recs.removeprefix("<nics>").removesuffix("</nics>").replace(
               "<nic ", "<kvmnet:nic ") + "</kvmnet:nics></metadata><devices>"
           "<interface type='bridge'><mac address='52:54:00:00:00:01'/>"
           "<source bridge='br0'/><target dev='vnet7'/></interface>"
           "<interface type='bridge'><mac address='52:54:00:00:00:02'/>"
           "<source bridge='br0'/><target dev='vnet8'/></interface></devices></domain>")
    assert ports_for(dom) == [("vnet7", Vlans((), 100))]
    calls: list[tuple[str, Vlans]] = []
    line = run_vlan_hook(dom, "g", "start", lambda t, v: calls.append((t, v)) or "set")
    assert calls == [("vnet7", Vlans((), 100))] and line == "g start: set"
    assert run_vlan_hook(dom, "g", "stopped", lambda t, v: "x") == "g stopped: nothing to do"
    # another namespace's <nics>, a hostile tap name, VLAN ids that are not: nothing
    assert ports_for(dom.replace(KVMNET_NS, "https://evil.invalid/x")) == []
    assert ports_for(dom.replace("vnet7", "vnet7;reboot")) == []
    assert ports_for(dom.replace('untagged="100"', 'untagged="100 200"')) == []


def test_the_hook_script_is_plain_and_quoted(tmp_path: Path) -> None:
    text = hook_text(tmp_path / "a b", python="/opt/py thon")
    assert "PY='/opt/py thon'" in text and "kvmnet.backend.vlan_hook" in text
    assert text.startswith("#!/bin/sh\n") and text.rstrip().endswith("exit 0")


def test_entries_read_as_plan_shows_them() -> None:
    assert entries_text(frozenset()) == "no VLAN"
    assert entries_text(Vlans((200,), 100).entries()) == "100 (pvid, untagged), 200"
    el = vlan_element(Vlans((), 4094))
    assert etree.tostring(el) == b'<vlan><tag id="4094"/></vlan>'


def test_import_writes_a_nic_s_vlans_back() -> None:
    from kvmnet.service.ops import import_spec

    st = _running(VlanLive(native=False, bridges={"br0": (True, 1)}, hook="ok"))
    imported, _notes = import_spec(st)  # (network lan is not live here: its NICs stay out)
    (nic,) = imported.guests["g"].interfaces
    assert (nic.bridge, nic.vlan, nic.vlans, nic.native) == ("br0", 100, [], None)
    trunk = Vlans((100,), 200)
    dom = st.domains["g"]
    nics = (dom.nics[0].__class__(**{**dom.nics[0].__dict__, "vlans": trunk}),)
    st2 = LiveState(st.uri, {}, {"g": LiveDomain("g", False, nics)}, st.host)
    (nic,) = import_spec(st2)[0].guests["g"].interfaces
    assert (nic.vlan, nic.vlans, nic.native) == (None, [100, 200], 200)


def test_attach_on_libvirt_9_keeps_the_link_down_until_the_tap_is_on_its_vlans(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A NIC hot-plugged into a running guest comes with its link down; kvmnet sets the
    tap's VLANs, then brings the link up: no frame on the bridge's default VLAN."""
    from kvmnet.apply.runner import run
    from kvmnet.backend import vlans as backend_vlans
    from kvmnet.backend.fake import FakeBackend
    from kvmnet.backend.read import read_state

    class Taps(FakeBackend):
        def nic_tap(self, domain: str, mac: str) -> str | None:
            return "vnet0"

    seen: list[tuple[str, str]] = []
    fake = Taps()
    fake.load_domain("<domain><name>g</name><devices/></domain>", running=True)

    def set_port(tap: str, want: Vlans | None, netns: str | None = None) -> str:
        running = fake.domains["g"].running or ""
        seen.append((tap, "down" if "state=\"down\"" in running else "up"))
        return f"{tap}: {want.text() if want else 'none'}"

    monkeypatch.setattr(backend_vlans, "set_port", set_port)
    s = load_text(SPEC.replace("      - {network: lan, vlans: [100, 200], native: 200}\n"
                               "      - {network: lan}\n", ""), "t.yaml")[0]
    vl = VlanLive(native=False, bridges={"br0": (True, 1)}, hook="ok")
    live = read_state(fake)
    live = LiveState(live.uri, live.networks, live.domains, HostState(readable=False),
                     vlans=vl)
    plan = make_plan(s, live)
    (attach,) = [a for a in plan.actions if a.kind == "nic.attach"]
    assert attach.set_vlans and "<vlan" not in attach.xml
    report = run(type(plan)(tuple(a for a in plan.actions if a.kind == "nic.attach")),
                 fake, live)
    assert report.ok, [r.message for r in report.results]
    assert seen == [("vnet0", "down")]                   # set while the link was down
    dom = fake.domains["g"]
    assert "<link" not in dom.xml and "<link" not in (dom.running or "")   # then up
    rec = parse_nic_records(dom.metadata or "")
    assert [r.vlans for r in rec] == [Vlans((), 100)]
    # a stop between the two (link left down) is planned again: up, on its VLANs
    (nic,) = parse_nics(dom.running.replace("</interface>", "<link state='down'/>"
                                            "</interface>"))
    stopped = LiveState(live.uri, live.networks, {"g": LiveDomain(
        "g", True, (nic,), (nic,), frozenset({nic.mac}), rec)}, live.host, vlans=vl)
    (again,) = guest_side(make_plan(s, stopped))
    assert again.kind == "nic.update" and again.set_vlans
    assert again.details == ("~ link down -> up (live)",)


def test_a_port_on_no_vlan_at_all_reads_as_an_empty_table() -> None:
    """The kernel leaves IFLA_AF_SPEC out for a port on no VLAN (seen in Debian's
    kernel, tests/integration/test_vlans_libvirt_kernelvm.py): that is an empty table, so every VLAN
    taken off a tap by hand still shows as drift."""
    from kvmnet.parse.vlans import port_tables

    class Spec(list):  # type: ignore[type-arg]
        def get_attrs(self, name: str) -> list[dict[str, int]]:
            return list(self)

    msgs = [{"IFLA_IFNAME": "vnet0"},
            {"IFLA_IFNAME": "vnet1", "IFLA_AF_SPEC": Spec([{"vid": 100, "flags": 6},
                                                            {"vid": 200, "flags": 0},
                                                            {"vid": 5000, "flags": 0}])}]
    assert port_tables(msgs) == {"vnet0": frozenset(),
                                 "vnet1": frozenset({(100, True, True), (200, False, False)})}
