"""kvmnet.ovn without a database: wanted rows, the NB differ, parse, import, check.

Table-driven like the libvirt plan tests: one case = spec + live NbState ->
expected (op, target) list; every no-op case asserts an empty plan.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from kvmnet.backend.ovsdb import parse_nb, parse_router
from kvmnet.model.live import LiveDomain, LiveNic, LiveState
from kvmnet.model.overlay import OWNER_KEY, NbState, Port, Switch
from kvmnet.model.spec import Guest, GuestNic, Spec
from kvmnet.parse.overlay import import_overlay, merge_overlay
from kvmnet.plan import make_plan
from kvmnet.plan.overlay_nb import plan_nb
from kvmnet.render.interface import overlay_port_id
from kvmnet.render.overlay import server_mac, wanted_nb
from kvmnet.spec.check import check, errors

NB = "unix:/run/kvmnet-ovn/central/nb.sock"
BASE = f"""
ovn: {{northbound: "{NB}"}}
networks:
  ov1:
    mode: overlay
    ipv4: {{address: 10.240.1.1/24, dhcp: 10.240.1.100-10.240.1.199, lease_time: 2h}}
guests:
  web:
    interfaces: [{{network: ov1, ipv4: 10.240.1.11, mac: "52:54:00:00:01:01"}}]
  db:
    interfaces: [{{network: ov1, mac: "52:54:00:00:01:02"}}]
"""


def spec_of(text: str = BASE, **patch: Any) -> Spec:
    data = yaml.safe_load(text)
    for dotted, value in patch.items():
        node = data
        *parents, last = dotted.split("__")
        for k in parents:
            node = node.setdefault(k, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    spec = Spec.model_validate(data)
    assert errors(check(spec)) == []
    return spec


def as_live(state: NbState, up: frozenset[str] = frozenset()) -> NbState:
    """The wanted rows as the database would show them (UUIDs, port lists)."""
    ports = {n: replace(p, uuid=f"lsp-{n}", up=n in up)
             for n, p in state.ports.items()}
    switches = {n: replace(
        s, uuid=f"ls-{n}", ports=tuple(sorted(p for p in ports if ports[p].switch == n)))
        for n, s in state.switches.items()}
    dhcp = {n: replace(d, uuid=f"dhcp-{n}") for n, d in state.dhcp.items()}
    routers = {n: replace(r, uuid=f"lr-{n}") for n, r in state.routers.items()}
    return NbState(switches, ports, dhcp, routers)


WEB = overlay_port_id("ov1", "web", 0)
DB = overlay_port_id("ov1", "db", 0)


def ops(spec: Spec, live: NbState, **kw: Any) -> list[tuple[str, str]]:
    return [(c.op, c.target) for c in plan_nb(spec, live, **kw).changes]


# -- wanted rows ------------------------------------------------------------------

def test_wanted_rows() -> None:
    w = wanted_nb(spec_of())
    sw = w.switches["ov1"]
    assert sw.other_config == {"subnet": "10.240.1.0/24",
                               "exclude_ips": "10.240.1.1..10.240.1.99 10.240.1.200..10.240.1.254"}
    assert sw.external_ids == {OWNER_KEY: "true", "kvmnet:network": "ov1"}
    d = w.dhcp["ov1"]
    assert d.cidr == "10.240.1.0/24"
    mac = server_mac("ov1", spec_of().networks["ov1"])
    assert d.options == {"server_id": "10.240.1.1", "router": "10.240.1.1",
                         "lease_time": "7200", "server_mac": mac}
    web, db = w.ports[WEB], w.ports[DB]
    assert web.addresses == ("52:54:00:00:01:01 10.240.1.11",)
    assert web.port_security == web.addresses
    assert web.dhcpv4 == "ov1"
    assert web.external_ids["kvmnet:guest"] == "web" and web.external_ids["kvmnet:nic"] == "0"
    assert db.addresses == ("52:54:00:00:01:02 dynamic",)
    assert db.port_security == ("52:54:00:00:01:02",)


def test_reservation_by_mac_makes_a_static_port_and_options_follow_the_network() -> None:
    spec = spec_of(networks__ov1__ipv4__hosts=[{"mac": "52:54:00:00:01:02", "ip": "10.240.1.50"}],
                   networks__ov1__mtu=1400, networks__ov1__domain="lab.test",
                   networks__ov1__mac="02:00:00:00:00:99")
    w = wanted_nb(spec)
    assert w.ports[DB].addresses == ("52:54:00:00:01:02 10.240.1.50",)
    assert w.dhcp["ov1"].options["mtu"] == "1400"
    assert w.dhcp["ov1"].options["domain_name"] == '"lab.test"'
    assert w.dhcp["ov1"].options["server_mac"] == "02:00:00:00:00:99"


# -- the differ -------------------------------------------------------------------

def test_empty_database_creates_switch_dhcp_ports_in_order() -> None:
    spec = spec_of()
    p = plan_nb(spec, NbState())
    assert [(c.op, c.target) for c in p.changes] == [
        ("create", "ovn/switch/ov1"), ("create", "ovn/dhcp/ov1"),
        ("create", "ovn/port/ov1/db/0"), ("create", "ovn/port/ov1/web/0")]
    port = p.changes[3]
    assert port.switch == "ov1" and port.dhcp_network == "ov1" and port.key == WEB
    assert port.columns["addresses"] == ["52:54:00:00:01:01 10.240.1.11"]


def test_same_rows_no_changes() -> None:
    spec = spec_of()
    assert plan_nb(spec, as_live(wanted_nb(spec))).changes == ()


def test_keys_others_add_are_not_changes() -> None:
    spec = spec_of()
    live = as_live(wanted_nb(spec))
    sw = live.switches["ov1"]
    live = replace(live, switches={"ov1": replace(
        sw, other_config={**sw.other_config, "mcast_snoop": "true"},
        external_ids={**sw.external_ids, "team": "blue"})})
    assert ops(spec, live) == []


@pytest.mark.parametrize(("patch", "expect"), [
    ({"guests__web__interfaces": [{"network": "ov1", "ipv4": "10.240.1.12",
                                   "mac": "52:54:00:00:01:01"}]},
     [("update", "ovn/port/ov1/web/0")]),
    ({"networks__ov1__ipv4__lease_time": "30m"}, [("update", "ovn/dhcp/ov1")]),
    ({"networks__ov1__ipv4__dhcp": "10.240.1.100-10.240.1.150"},
     [("update", "ovn/switch/ov1")]),
    ({"guests__db": None}, [("remove", "ovn/port/ov1/db/0")]),
])
def test_changes(patch: dict[str, Any], expect: list[tuple[str, str]]) -> None:
    live = as_live(wanted_nb(spec_of()))
    assert ops(spec_of(**patch), live) == expect


def test_address_change_of_a_bound_port_is_disruptive() -> None:
    live = as_live(wanted_nb(spec_of()), up=frozenset({WEB}))
    spec = spec_of(guests__web__interfaces=[{"network": "ov1", "ipv4": "10.240.1.12",
                                             "mac": "52:54:00:00:01:01"}])
    (c,) = plan_nb(spec, live).changes
    assert c.impact == "disruptive"
    assert c.details == ("~ addresses 52:54:00:00:01:01 10.240.1.11 -> 52:54:00:00:01:01 "
                         "10.240.1.12",
                         "~ port security 52:54:00:00:01:01 10.240.1.11 -> 52:54:00:00:01:01 "
                         "10.240.1.12")


def test_dropped_option_is_removed_from_the_map() -> None:
    live = as_live(wanted_nb(spec_of(networks__ov1__mtu=1400)))
    (c,) = plan_nb(spec_of(), live).changes
    assert (c.op, c.table, dict(c.remove_keys)) == ("update", "dhcp", {"options": ("mtu",)})


def test_network_left_the_spec_removes_ports_then_dhcp_then_switch() -> None:
    live = as_live(wanted_nb(spec_of()), up=frozenset({WEB}))
    spec = spec_of(networks={}, guests={})
    p = plan_nb(spec, live)
    assert [(c.op, c.target) for c in p.changes] == [
        ("remove", "ovn/port/ov1/db/0"), ("remove", "ovn/port/ov1/web/0"),
        ("remove", "ovn/dhcp/ov1"), ("remove", "ovn/switch/ov1")]
    assert p.changes[1].impact == "disruptive"
    assert p.changes[3].needs_allow_destroy


def test_scope_keeps_networks_outside_it() -> None:
    live = as_live(wanted_nb(spec_of()))
    spec = spec_of(networks={}, guests={})
    assert ops(spec, live, in_scope=lambda n: n.startswith("team-")) == []


def test_foreign_rows_are_never_touched() -> None:
    spec = spec_of()
    live = as_live(wanted_nb(spec))
    foreign = Port("theirs", "ov1", ("0a:00:00:00:00:01",), (), None, {})
    other = Switch("neutron-1", {}, {"neutron:network_name": "x"}, "ls-n")
    sw = replace(live.switches["ov1"], ports=(*live.switches["ov1"].ports, "theirs"))
    live = NbState({"ov1": sw, "neutron-1": other}, {**live.ports, "theirs": foreign}, live.dhcp)
    assert ops(spec, live) == []
    # removing ov1 from the spec removes kvmnet's ports but skips the switch
    p = plan_nb(spec_of(networks={}, guests={}), live)
    sw_change = [c for c in p.changes if c.table == "switch"]
    assert [c.target for c in sw_change] == ["ovn/switch/ov1"]
    assert sw_change[0].skipped and "theirs" in sw_change[0].skipped
    assert all(c.key != "theirs" for c in p.changes)


def test_unmanaged_switch_with_the_name_is_an_error_unless_adopted() -> None:
    spec = spec_of()
    theirs = Switch("ov1", {"subnet": "10.240.1.0/24"}, {}, "ls-x")
    p = plan_nb(spec, NbState({"ov1": theirs}))
    assert [f.path for f in p.findings] == [("networks", "ov1")]
    assert "adopt: true" in p.findings[0].message
    assert p.changes == ()  # nothing is planned on a switch kvmnet may not touch
    p = plan_nb(spec, NbState({"ov1": theirs}), adopt=frozenset({"ov1"}))
    assert [(c.op, c.target) for c in p.changes][:2] == [
        ("adopt", "ovn/switch/ov1"), ("create", "ovn/dhcp/ov1")]
    assert p.changes[0].uuid == "ls-x"


def test_duplicate_marked_rows_are_removed() -> None:
    spec = spec_of()
    live = as_live(wanted_nb(spec))
    live = replace(live, duplicates=(replace(
        live.switches["ov1"], uuid="ls-dup", ports=()),))
    assert ops(spec, live) == [("remove", "ovn/switch/ov1")]


# -- parse (fixture rows as fetch_nb returns them) ---------------------------------

RAW: dict[str, list[dict[str, Any]]] = {
    "Logical_Switch": [
        {"_uuid": "b", "name": "ov1", "other_config": {"subnet": "10.240.1.0/24"},
         "external_ids": {OWNER_KEY: "true", "kvmnet:network": "ov1"}, "ports": ["p1", "p2"]},
        {"_uuid": "a", "name": "ov1", "other_config": {}, "external_ids": {}, "ports": []},
        {"_uuid": "c", "name": "ov1", "other_config": {},
         "external_ids": {OWNER_KEY: "true", "kvmnet:network": "ov1"}, "ports": []},
    ],
    "Logical_Switch_Port": [
        {"_uuid": "p1", "name": "port-1", "addresses": ["52:54:00:00:00:01 dynamic"],
         "port_security": ["52:54:00:00:00:01"], "dhcpv4_options": ["d1"],
         "external_ids": {OWNER_KEY: "true"}, "up": [True],
         "dynamic_addresses": ["52:54:00:00:00:01 10.240.1.100"]},
        {"_uuid": "p2", "name": "port-2", "addresses": [], "port_security": [],
         "dhcpv4_options": ["zz"], "external_ids": {}, "up": [], "dynamic_addresses": []},
    ],
    "DHCP_Options": [
        {"_uuid": "d1", "cidr": "10.240.1.0/24", "options": {"server_id": "10.240.1.1"},
         "external_ids": {OWNER_KEY: "true", "kvmnet:network": "ov1"}},
        {"_uuid": "d0", "cidr": "10.0.0.0/24", "options": {}, "external_ids": {}},
    ],
}


def test_parse_nb() -> None:
    st = parse_nb(RAW)
    assert st.switches["ov1"].uuid == "b"          # the marked one wins over an unmarked
    assert st.switches["ov1"].ports == ("port-1", "port-2")
    assert [d.uuid for d in st.duplicates] == ["c"]
    p1, p2 = st.ports["port-1"], st.ports["port-2"]
    assert (p1.switch, p1.dhcpv4, p1.up, p1.dynamic) == ("ov1", "ov1", True,
                                                          "52:54:00:00:00:01 10.240.1.100")
    assert (p2.dhcpv4, p2.up, p2.owned) == ("?", False, False)
    assert list(st.dhcp) == ["ov1"]


# -- import -----------------------------------------------------------------------

@pytest.mark.parametrize("patch", [
    {},
    {"networks__ov1__mtu": 1400, "networks__ov1__domain": "lab.test",
     "networks__ov1__mac": "02:00:00:00:00:99", "networks__ov1__ipv4__lease_time": "infinite"},
    {"networks__ov1__ipv4__dhcp": ["10.240.1.10-10.240.1.19", "10.240.1.30-10.240.1.254"],
     "networks__ov1__ipv4__lease_time": "90s"},
])
def test_import_round_trip(patch: dict[str, Any]) -> None:
    spec = spec_of(**patch)
    live = as_live(wanted_nb(spec))
    imported, notes = import_overlay(live, spec.ovn)  # type: ignore[arg-type]
    assert notes == []
    assert errors(check(imported)) == []
    assert plan_nb(imported, live).changes == ()
    assert imported.guests["web"].interfaces[0].ipv4 is not None
    assert imported.guests["db"].interfaces[0].ipv4 is None


def test_merge_overlay_replaces_the_br_int_nic_libvirt_shows() -> None:
    spec = spec_of()
    overlay, _ = import_overlay(as_live(wanted_nb(spec)), spec.ovn)  # type: ignore[arg-type]
    from_libvirt = Spec(guests={"web": Guest(interfaces=[
        GuestNic(bridge="br-int", mac="52:54:00:00:01:01", model="virtio")])})
    merged = merge_overlay(from_libvirt, overlay)
    (nic,) = merged.guests["web"].interfaces
    assert (nic.network, nic.model, str(nic.ipv4)) == ("ov1", "virtio", "10.240.1.11")
    assert merged.ovn == spec.ovn


# -- make_plan and check ----------------------------------------------------------

def _live(ovn: NbState | None, domains: dict[str, LiveDomain] | None = None) -> LiveState:
    return LiveState("test:///default", {}, domains or {}, is_test=True, ovn=ovn)


def test_make_plan_wraps_changes_in_ovn_actions() -> None:
    spec = spec_of()
    plan = make_plan(spec, _live(NbState()))
    ovn = [a for a in plan.actions if a.kind.startswith("ovn.")]
    assert [(a.kind, a.target) for a in ovn][:2] == [("ovn.create", "ovn/switch/ov1"),
                                                      ("ovn.create", "ovn/dhcp/ov1")]
    assert all(a.ovn is not None and a.ovn.nb.northbound == NB for a in ovn)
    assert not make_plan(spec, _live(as_live(wanted_nb(spec)))).changes


def test_make_plan_without_the_database_read_is_an_error() -> None:
    plan = make_plan(spec_of(), _live(None))
    assert [f.path for f in plan.errors] == [("ovn",)]


def test_overlay_nic_as_libvirt_shows_it_is_no_change() -> None:
    spec = spec_of()
    nic = LiveNic("52:54:00:00:01:01", "bridge", "br-int")
    dom = LiveDomain("web", True, (nic,), (nic,), frozenset({nic.mac}))
    plan = make_plan(spec, _live(as_live(wanted_nb(spec)), {"web": dom}))
    assert [a.kind for a in plan.actions] == []


@pytest.mark.parametrize(("net", "top", "needle"), [
    ({"mode": "overlay", "ipv4": {"address": "10.240.1.1/24", "dhcp": "10.240.1.2-10.240.1.9"}},
     {}, "add ovn:"),
    ({"mode": "overlay"}, {"ovn": {"northbound": NB}}, "needs ipv4"),
    ({"mode": "overlay", "ipv4": {"address": "10.240.1.1/24"}}, {"ovn": {"northbound": NB}},
     "needs a DHCP range"),
    ({"mode": "overlay", "bridge": "br9", "ipv4": {"address": "10.240.1.1/24",
                                                   "dhcp": "10.240.1.2-10.240.1.9"}},
     {"ovn": {"northbound": NB}}, "bridge does not apply"),
])
def test_check_overlay(net: dict[str, Any], top: dict[str, Any], needle: str) -> None:
    spec = Spec.model_validate({"networks": {"o": net}, **top})
    msgs = [p.message for p in errors(check(spec))]
    assert any(needle in m for m in msgs), msgs


def test_bad_northbound_remote() -> None:
    with pytest.raises(ValueError, match="OVSDB remote"):
        Spec.model_validate({"ovn": {"northbound": "localhost:6641"}})


# -- router with SNAT ---------------------------------------------------------------

ROUTER = {"external": {"physnet": "phys", "address": "10.240.3.10/24",
                       "gateway": "10.240.3.254", "chassis": ["hv1", "hv2"]}}


def test_router_rows() -> None:
    w = wanted_nb(spec_of(networks__ov1__router=ROUTER))
    r = w.routers["ov1"]
    assert [(p.name, p.networks, p.gateway_chassis) for p in r.ports] == [
        ("kvmnet-ov1-gw", ("10.240.3.10/24",), (("hv1", 2), ("hv2", 1))),
        ("kvmnet-ov1-int", ("10.240.1.1/24",), ())]
    assert r.routes == (("0.0.0.0/0", "10.240.3.254"),)
    assert r.nat == (("snat", "10.240.3.10", "10.240.1.0/24"),)
    assert r.ports[1].mac == w.dhcp["ov1"].options["server_mac"]
    assert w.switches["kvmnet-ov1-ext"].other_config == {}
    assert w.ports["kvmnet-ov1-ext-localnet"].options == {"network_name": "phys"}
    assert w.ports["kvmnet-ov1-rtr"].options == {"router-port": "kvmnet-ov1-int"}


def test_router_as_the_database_returns_it_is_no_change() -> None:
    spec = spec_of(networks__ov1__router=ROUTER)
    r = wanted_nb(spec).routers["ov1"]
    raw = {"_uuid": "lr", "name": "ov1", "external_ids": dict(r.external_ids),
           "ports": [{"name": p.name, "mac": p.mac, "networks": list(p.networks),
                      "gateway_chassis": list(reversed(p.gateway_chassis))}
                     for p in reversed(r.ports)],
           "static_routes": list(r.routes), "nat": list(r.nat)}
    live = as_live(wanted_nb(spec))
    live = replace(live, routers={"ov1": parse_router(raw)})
    assert ops(spec, live) == []


def test_router_changes() -> None:
    live = as_live(wanted_nb(spec_of(networks__ov1__router=ROUTER)))
    no_snat = {**ROUTER, "snat": False}
    p = plan_nb(spec_of(networks__ov1__router=no_snat), live)
    assert [(c.op, c.target) for c in p.changes] == [("update", "ovn/router/ov1")]
    assert p.changes[0].details == ("- nat snat 10.240.1.0/24 -> 10.240.3.10",)
    assert p.changes[0].uuid == "lr-ov1" and p.changes[0].router is not None
    assert ops(spec_of(), live) == [
        ("remove", "ovn/router/ov1"), ("remove", "ovn/port/kvmnet-ov1-ext-localnet"),
        ("remove", "ovn/port/kvmnet-ov1-ext-rtr"), ("remove", "ovn/port/kvmnet-ov1-rtr"),
        ("remove", "ovn/switch/kvmnet-ov1-ext")]


def test_router_import_round_trip() -> None:
    spec = spec_of(networks__ov1__router=ROUTER)
    live = as_live(wanted_nb(spec))
    imported, notes = import_overlay(live, spec.ovn)  # type: ignore[arg-type]
    assert notes == [] and imported.networks["ov1"].router == spec.networks["ov1"].router
    assert plan_nb(imported, live).changes == ()


@pytest.mark.parametrize(("router", "needle"), [
    ({**ROUTER, "external": {**ROUTER["external"], "address": "10.240.1.200/24"}},
     "outside 10.240.1.0/24"),
    ({**ROUTER, "external": {**ROUTER["external"], "gateway": "10.9.9.9"}}, "not in"),
])
def test_check_router(router: dict[str, Any], needle: str) -> None:
    spec = Spec.model_validate(yaml.safe_load(BASE) | {})
    data = spec.model_dump(mode="json")
    data["networks"]["ov1"]["router"] = router
    msgs = [p.message for p in errors(check(Spec.model_validate(data)))]
    assert any(needle in m for m in msgs), msgs


def test_router_only_on_overlay() -> None:
    spec = Spec.model_validate({"networks": {"n": {"mode": "nat", "router": ROUTER,
                                                   "ipv4": {"address": "10.240.5.1/24"}}}})
    assert any("applies to mode: overlay only" in p.message for p in errors(check(spec)))
