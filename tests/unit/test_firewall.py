"""Guest firewalls (issue 21) without libvirtd: the spec's checks, the nwfilter XML
(valid against libvirt's nwfilter.rng, read back by import), and plan + apply through
the in-memory backend: define, no-op, redefine, drift, the NIC's filterref changed
live, removal, a foreign filter of the same name, the test driver."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lxml import etree

from kvmnet.apply.runner import run
from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.read import read_state
from kvmnet.model.firewall import filter_uuid, nic_filter, owned
from kvmnet.model.spec import Spec
from kvmnet.parse.domain import parse_nics
from kvmnet.parse.nwfilter import filter_lines, import_set
from kvmnet.plan import make_plan
from kvmnet.render.network import network_xml
from kvmnet.render.nwfilter import set_element, wanted_filters
from kvmnet.spec.check import check_file

RNG = Path("/usr/share/libvirt/schemas/nwfilter.rng")

SPEC = {
    "firewalls": {
        "web": {"default_in": "drop", "rules": [
            {"direction": "in", "proto": "udp", "ports": 68},
            {"direction": "in", "proto": "tcp", "ports": [22, "8000-8010"],
             "peer": "10.155.10.0/24"},
            {"direction": "in", "proto": "icmp", "network": "lan"},
            {"direction": "in", "proto": "tcp", "ports": 81, "guest": "b"},
            {"direction": "in", "proto": "tcp", "ports": 80, "host": True},
            {"direction": "out", "proto": "all", "action": "reject",
             "peer": ["10.9.0.0/16", "fd00::/8"], "stateful": False},
        ]},
        "ssh": {"rules": [{"direction": "in", "proto": "tcp", "ports": 22}]},
    },
    "networks": {"lan": {"mode": "route", "ipv4": {
        "address": "10.155.1.1/24", "dhcp": "10.155.1.100-10.155.1.200"}}},
    "guests": {
        "a": {"interfaces": [{"network": "lan", "ipv4": "10.155.1.10",
                              "firewalls": ["web", "ssh"]}]},
        "b": {"interfaces": [{"network": "lan", "ipv4": "10.155.1.11", "antispoof": True}]},
    },
}
DOM = ("<domain type='test'><name>{0}</name><devices>"
       "<interface type='network'><mac address='{1}'/><source network='lan'/>"
       "<model type='virtio'/></interface></devices></domain>")


def spec_of(d: dict) -> Spec:  # type: ignore[type-arg]
    return Spec.model_validate(d)


def write(tmp_path: Path, d: dict) -> Path:  # type: ignore[type-arg]
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


def messages(tmp_path: Path, d: dict) -> list[str]:  # type: ignore[type-arg]
    _, _, problems = check_file(write(tmp_path, d))
    return [f"{p.severity}: {p.message}" for p in problems]


def test_the_example_spec_is_clean(tmp_path: Path) -> None:
    assert messages(tmp_path, SPEC) == []


def test_checks_name_what_is_wrong_and_what_to_write(tmp_path: Path) -> None:
    d = yaml.safe_load(yaml.safe_dump(SPEC))
    d["networks"]["lan"]["firewalls"] = ["wbe"]
    d["guests"]["b"]["interfaces"][0].pop("ipv4")
    d["firewalls"]["web"]["rules"][1]["peer"] = "10.155.11.0/23"  # host bits
    d["firewalls"]["ssh"]["rules"].append({"direction": "in", "proto": "tcp", "guest": "c"})
    got = messages(tmp_path, d)
    assert any("unknown firewall set 'wbe': did you mean 'web'?" in m for m in got), got
    assert any("has host bits set: write 10.155.10.0/23" in m
               for m in got), got
    assert any("unknown guest 'c'" in m for m in got), got
    assert any("antispoof binds the NIC to its ipv4 reservation" in m for m in got), got
    assert any("guest b has no address" in m for m in got), got  # web's peer rule


def test_overlapping_and_contradicting_rules_are_warned(tmp_path: Path) -> None:
    d = yaml.safe_load(yaml.safe_dump(SPEC))
    d["firewalls"]["ssh"]["rules"] += [
        {"direction": "in", "proto": "tcp", "ports": 22, "peer": "10.1.0.0/16",
         "action": "drop"},
        {"direction": "in", "proto": "tcp", "ports": "20-30", "action": "drop"},
        {"direction": "in", "proto": "tcp", "ports": 22, "peer": "10.1.2.0/24"},
    ]
    got = messages(tmp_path, d)
    assert [m for m in got if "rules" in m or "contradicts" in m or "never" in m] == [
        "warning: firewalls.ssh.rules.1: contradicts rule 1 (accept in tcp): they match the "
        "same traffic, and the first match wins, so this rule never applies; move it up or "
        "narrow rule 1",
        "warning: firewalls.ssh.rules.2: contradicts rule 1 (accept in tcp): they match the "
        "same traffic, and the first match wins; move this one up if it should win",
        "warning: firewalls.ssh.rules.3: never matches: rule 1 already accepts all of it; "
        "remove it"], got


def test_a_default_that_cuts_dhcp_is_warned_with_the_rule_to_add(tmp_path: Path) -> None:
    d = yaml.safe_load(yaml.safe_dump(SPEC))
    d["firewalls"]["web"]["rules"].pop(0)  # (default_in drop: the host's answers still pass)
    assert messages(tmp_path, d) == []
    d["firewalls"]["web"]["default_out"] = "drop"
    assert messages(tmp_path, d) == [
        "warning: firewalls.web.default_out: drops the DHCP and DNS of network lan (guest a "
        "uses this set there): add the rules {direction: out, proto: udp, ports: [67, 53]} "
        "and {direction: out, proto: tcp, ports: 53} to keep them"]
    d["firewalls"]["web"]["rules"].insert(0, {"direction": "out", "proto": "udp",
                                              "ports": [67, 53], "host": True})
    assert messages(tmp_path, d) == []


def test_a_bridge_networks_lan_dhcp_is_warned_about(tmp_path: Path) -> None:
    d = {"firewalls": {"s": {"default_in": "drop"}},
         "networks": {"lan": {"mode": "bridge", "bridge": "br0", "firewalls": ["s"]}},
         "guests": {"g": {"interfaces": [{"network": "lan"}]}}}
    assert [m for m in messages(tmp_path, d) if "firewalls" in m] == [
        "warning: firewalls.s.default_in: drops the DHCP answers of the LAN of bridge "
        "network lan (guest g uses this set there), if it has DHCP: add the rule "
        "{direction: in, proto: udp, ports: 68} to keep them"]
    d["firewalls"]["s"]["rules"] = [{"direction": "in", "proto": "udp", "ports": 68}]
    assert not [m for m in messages(tmp_path, d) if "firewalls" in m]


def test_rules_need_one_peer_and_ports_only_for_tcp_udp(tmp_path: Path) -> None:
    d = yaml.safe_load(yaml.safe_dump(SPEC))
    d["firewalls"]["ssh"]["rules"] = [
        {"direction": "in", "proto": "icmp", "ports": 22},
        {"direction": "in", "host": True, "guest": "a"}]
    got = "\n".join(messages(tmp_path, d))
    assert "ports need proto: tcp or udp (this rule is icmp)" in got
    assert "a rule has one peer: it gives guest and host" in got


def test_filters_are_valid_nwfilter_xml_and_read_back_as_the_sets() -> None:
    spec = spec_of(SPEC)
    rng = etree.RelaxNG(etree.parse(str(RNG))) if RNG.exists() else None
    for name, xml in wanted_filters(spec).items():
        root = etree.fromstring(xml)
        if rng is not None:
            # libvirt's nwfilter.rng lists no `state` for the IPv6 protocols, which its
            # parser takes (nwfilter_conf.c: COMMON_IP_PROPS, for IPv4 and IPv6 alike)
            checked = etree.fromstring(xml)
            for m in checked.iter("all-ipv6", "tcp-ipv6", "udp-ipv6", "icmpv6"):
                m.attrib.pop("state", None)
            assert rng.validate(checked), (name, rng.error_log)
        assert owned(name, root.findtext("uuid"))
    web = etree.tostring(set_element(spec, "web"), encoding="unicode")
    lines = filter_lines(web)
    assert "rule 101 accept in tcp dstportstart=22 srcipaddr=10.155.10.0 srcipmask=24" in lines
    assert ("rule 101 accept in tcp dstportend=8010 dstportstart=8000 srcipaddr=10.155.10.0 "
            "srcipmask=24") in lines
    assert "rule 103 accept in tcp dstportstart=81 srcipaddr=10.155.1.11 srcipmask=32" in lines
    assert "rule 104 accept in tcp dstportstart=80 srcipaddr=10.155.1.1 srcipmask=32" in lines
    assert "rule 105 reject out stateless all-ipv6 dstipaddr=fd00:: dstipmask=8" in lines
    # the combination (default_in drop): the guest's own connections pass, its answers to
    # what no in rule accepted do not
    combo = wanted_filters(spec)[nic_filter(("web", "ssh"), False)]
    assert filter_lines(combo) == [
        "chain root", "filterref kvmnet-set-web", "filterref kvmnet-set-ssh",
        "rule 999 accept out all", "rule 999 accept out all-ipv6",
        "rule 1000 drop out all state=ESTABLISHED,RELATED",
        "rule 1000 drop out all-ipv6 state=ESTABLISHED,RELATED"]
    assert "rule 1000 drop in all-ipv6 state=NEW,ESTABLISHED,RELATED,INVALID" in lines
    back = import_set(web)
    assert back.default_in == "drop" and len(back.rules) == 6
    # what import writes renders to the same filter (peers by address)
    again = spec.model_copy(update={"firewalls": {**spec.firewalls, "web": back}})
    assert filter_lines(etree.tostring(set_element(again, "web"), encoding="unicode")) == lines


def test_filter_names_and_the_ownership_mark() -> None:
    assert nic_filter(("web", "ssh"), True).startswith("kvmnet-nic-")
    assert len({nic_filter(("web", "ssh"), True), nic_filter(("web", "ssh"), False),
                nic_filter(("ssh", "web"), True), nic_filter((), True)}) == 4
    assert not owned("kvmnet-set-web", "58126bbd-353c-4108-87e9-02958e9cf71e")
    assert owned("kvmnet-set-web", filter_uuid("kvmnet-set-web"))
    assert not owned("web", filter_uuid("web"))


def _host(spec: Spec, *, with_clean_traffic: bool = True) -> FakeBackend:
    fake = FakeBackend()
    fake.define_network("lan", network_xml(spec, "lan"))
    fake.start_network("lan")
    fake.load_domain(DOM.format("a", "52:54:00:00:00:0a"), running=True)
    fake.load_domain(DOM.format("b", "52:54:00:00:00:0b"), running=True)
    if with_clean_traffic:
        fake.nwfilters = {"clean-traffic": "<filter name='clean-traffic' chain='root'>"
                          "<uuid>11111111-2222-3333-4444-555555555555</uuid></filter>"}
    fake.writes.clear()
    return fake


def _spec_with_macs() -> dict:  # type: ignore[type-arg]
    d = yaml.safe_load(yaml.safe_dump(SPEC))
    d["guests"]["a"]["interfaces"][0]["mac"] = "52:54:00:00:00:0a"
    d["guests"]["b"]["interfaces"][0]["mac"] = "52:54:00:00:00:0b"
    return d


def _apply(spec: Spec, fake: FakeBackend) -> list[tuple[str, str, str]]:
    live = read_state(fake)
    plan = make_plan(spec, live)
    assert not plan.errors, plan.errors
    report = run(plan, fake, live)
    assert report.ok, report.results
    return [(a.kind, a.target, a.impact) for a in plan.actions]


def test_plan_apply_noop_redefine_drift_and_removal() -> None:
    spec = spec_of(_spec_with_macs())
    fake = _host(spec)
    done = _apply(spec, fake)
    fw = [x for x in done if x[0].startswith("nwfilter")]
    combo, spoof = nic_filter(("web", "ssh"), False), nic_filter((), True)
    assert fw == [("nwfilter.define", "nwfilter/kvmnet-set-ssh", "live"),
                  ("nwfilter.define", "nwfilter/kvmnet-set-web", "live"),
                  *sorted([("nwfilter.define", f"nwfilter/{combo}", "live"),
                           ("nwfilter.define", f"nwfilter/{spoof}", "live")])]
    assert done.index(fw[-1]) < done.index(("nic.update", "guest/a/52:54:00:00:00:0a", "live"))
    nics = {n: parse_nics(fake.domains[n].running or "")[0] for n in ("a", "b")}
    assert nics["a"].filterref == combo and nics["a"].filter_params == ()
    assert (nics["b"].filterref, nics["b"].filter_params) == (spoof, (("IP", "10.155.1.11"),))
    # once: the second plan is empty, no write
    fake.writes.clear()
    assert _apply(spec, fake) == [] and fake.writes == []
    # a changed set: one redefinition, nothing else
    d = _spec_with_macs()
    d["firewalls"]["ssh"]["rules"][0]["ports"] = 2222
    plan = make_plan(spec_of(d), read_state(fake))
    assert [(a.kind, a.target) for a in plan.actions] == [
        ("nwfilter.redefine", "nwfilter/kvmnet-set-ssh")]
    assert plan.actions[0].details == (
        "- rule 100 accept in tcp dstportstart=22",
        "- rule 100 accept in tcp-ipv6 dstportstart=22",
        "+ rule 100 accept in tcp dstportstart=2222",
        "+ rule 100 accept in tcp-ipv6 dstportstart=2222")
    # drift: a rule added by hand shows, and apply puts the filter back
    assert fake.nwfilters is not None
    fake.nwfilters["kvmnet-set-web"] = fake.nwfilters["kvmnet-set-web"].replace(
        "</filter>", "<rule action='accept' direction='in' priority='900'><all/></rule>"
        "</filter>")
    plan = make_plan(spec, read_state(fake))
    assert [(a.kind, a.details) for a in plan.actions] == [
        ("nwfilter.redefine", ("- rule 900 accept in all",))]
    _apply(spec, fake)
    # removal: the NICs lose their filterref (live), then the filters go, combinations first
    plain = _spec_with_macs()
    plain.pop("firewalls")
    for g in plain["guests"].values():
        g["interfaces"][0].pop("firewalls", None)
        g["interfaces"][0].pop("antispoof", None)
    done = _apply(spec_of(plain), fake)
    assert done == [
        ("nic.update", "guest/a/52:54:00:00:00:0a", "live"),
        ("nic.update", "guest/b/52:54:00:00:00:0b", "live"),
        *sorted([("nwfilter.remove", f"nwfilter/{combo}", "live"),
                 ("nwfilter.remove", f"nwfilter/{spoof}", "live")]),
        ("nwfilter.remove", "nwfilter/kvmnet-set-ssh", "live"),
        ("nwfilter.remove", "nwfilter/kvmnet-set-web", "live")]
    assert list(fake.nwfilters) == ["clean-traffic"]
    assert all(parse_nics(fake.domains[n].running or "")[0].filterref is None for n in "ab")


def test_a_foreign_filter_of_the_same_name_is_an_error_and_left_alone() -> None:
    spec = spec_of(_spec_with_macs())
    fake = _host(spec)
    assert fake.nwfilters is not None
    fake.nwfilters["kvmnet-set-ssh"] = ("<filter name='kvmnet-set-ssh' chain='root'><uuid>"
                                        "11111111-0000-0000-0000-000000000000</uuid></filter>")
    plan = make_plan(spec, read_state(fake))
    assert any("nwfilter kvmnet-set-ssh exists and is not kvmnet's" in f.message
               for f in plan.errors)
    plain = spec_of({"networks": SPEC["networks"]})
    assert not [a for a in make_plan(plain, read_state(fake)).actions
                if a.kind.startswith("nwfilter")]


def test_antispoof_without_clean_traffic_says_what_to_install() -> None:
    spec = spec_of(_spec_with_macs())
    plan = make_plan(spec, read_state(_host(spec, with_clean_traffic=False)))
    assert any("libvirt-daemon-config-nwfilter" in f.message for f in plan.errors)


def test_a_driver_without_nwfilter_plans_them_skipped() -> None:
    spec = spec_of(_spec_with_macs())
    fake = _host(spec)
    fake.nwfilters = None
    plan = make_plan(spec, read_state(fake))
    skipped = [a for a in plan.actions if a.kind == "nwfilter.define"]
    assert len(skipped) == 4 and all("no nwfilter" in (a.skipped or "") for a in skipped)


@pytest.mark.parametrize("mode", ["macvtap", "overlay"])
def test_no_firewall_on_networks_without_a_bridge_tap(tmp_path: Path, mode: str) -> None:
    d = {"firewalls": {"s": {}}, "networks": {"m": {"mode": mode, "firewalls": ["s"]}}}
    if mode == "macvtap":
        d["networks"]["m"]["devices"] = ["eth0"]
    got = "\n".join(messages(tmp_path, d))
    assert f"guest firewalls need a tap on a Linux bridge; m is mode {mode}" in got


def test_antispoof_alone_defines_its_combination() -> None:
    d = {"networks": {"lan": {**SPEC["networks"]["lan"], "antispoof": True}},
         "guests": {"b": {"interfaces": [{"network": "lan", "ipv4": "10.155.1.11",
                                           "mac": "52:54:00:00:00:0b"}]}}}
    spec = spec_of(d)
    fake = _host(spec)
    fake.domains.pop("a")
    done = [x for x in _apply(spec, fake) if not x[0].startswith("network.")]
    assert done == [("nwfilter.define", f"nwfilter/{nic_filter((), True)}", "live"),
                    ("nic.update", "guest/b/52:54:00:00:00:0b", "live")]


def test_a_scoped_plan_removes_only_its_own_filters() -> None:
    spec = spec_of(_spec_with_macs())
    fake = _host(spec)
    _apply(spec, fake)
    fake.load_domain(DOM.format("other", "52:54:00:00:00:0c"), running=True)
    plain = spec_of({"networks": SPEC["networks"], "guests": {
        g: {"interfaces": [{"network": "lan", "mac": m}]}
        for g, m in (("a", "52:54:00:00:00:0a"), ("b", "52:54:00:00:00:0b"))}})
    spoof = nic_filter((), True)
    # another guest's NIC names the anti-spoofing combination: it stays
    xml = fake.domains["other"].xml.replace(
        "<model type='virtio'/>", f"<model type='virtio'/><filterref filter='{spoof}'/>")
    fake.load_domain(xml, running=True)
    gone = [a.target for a in make_plan(plain, read_state(fake), scope=("a", "b", "s*"))
            .actions if a.kind == "nwfilter.remove"]
    assert gone == ["nwfilter/kvmnet-set-ssh"]
    fake.domains.pop("other")
    gone = [a.target for a in make_plan(plain, read_state(fake), scope=("a", "b", "s*"))
            .actions if a.kind == "nwfilter.remove"]
    assert gone == [f"nwfilter/{spoof}", "nwfilter/kvmnet-set-ssh"]
    # a spec whose guests never named it leaves it (another spec's, unused for now)
    other = spec_of({"networks": {"n2": {"mode": "isolated"}}})
    assert not [a for a in make_plan(other, read_state(fake), scope=("n*",)).actions
                if a.kind == "nwfilter.remove"]


def test_a_real_host_without_the_nwfilter_driver_is_an_error() -> None:
    from dataclasses import replace

    spec = spec_of(_spec_with_macs())
    fake = _host(spec)
    fake.nwfilters = None
    live = replace(read_state(fake), is_test=False)
    assert any("answers no nwfilter call" in f.message for f in make_plan(spec, live).errors)
    plain = spec_of({"networks": SPEC["networks"]})
    assert not make_plan(plain, live).errors       # a spec without firewalls: no matter
