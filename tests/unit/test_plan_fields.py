"""Plans a person reads (issue 19, item 3): every field the planner compares has a human
label and unit (kvmnet.plan.fields), each change is data in `plan --json`, and a value
changed outside kvmnet says so (kvmnet.plan.drift)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from pydantic import BaseModel, create_model

from kvmnet.apply.runner import run
from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.read import read_state
from kvmnet.model.spec import GuestNic, Network, Spec
from kvmnet.plan import Plan, make_plan
from kvmnet.plan.fields import FIELDS, NIC_FIELDS, Items, Leaf, Skip, Sub
from kvmnet.render.network import KVMNET_NS
from kvmnet.spec.load import load_text

KVMNET = Path(sys.executable).parent / "kvmnet"
WHERE = "src/kvmnet/plan/fields.py"


# -- every field has a label -------------------------------------------------------------

def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds (X, X | None, list[X], Annotated[X, ...])."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, dict, tuple):
        for a in typing.get_args(annotation):
            out += _models_in(a)
    return out


def unlabelled(root: type[BaseModel] = Network) -> list[str]:
    """Each field of the network model (and of every model in it) the plan's table does
    not name, with what to add: empty when every field has its label."""
    missing: list[str] = []
    todo: list[tuple[type[BaseModel], str, type[BaseModel]]] = [(root, "", Network)]
    seen: set[type[BaseModel]] = set()
    while todo:
        cls, path, table_cls = todo.pop()
        if table_cls in seen:
            continue
        seen.add(table_cls)
        table = FIELDS.get(table_cls)
        if table is None:
            missing.append(f"{path or cls.__name__}: model {table_cls.__name__} has no table: "
                           f"add FIELDS[{table_cls.__name__}] = {{field: Leaf('label'), ...}} "
                           f"in {WHERE}")
            continue
        for name, info in cls.model_fields.items():
            where = f"{path}.{name}" if path else name
            entry = table.get(name)
            if entry is None:
                missing.append(
                    f"{where} ({cls.__name__}.{name}) has no label in a plan: add "
                    f"\"{name}\": Leaf(\"<what a person calls it>\", <formatter with its "
                    f"unit>) to FIELDS[{cls.__name__}] in {WHERE} (or Skip(\"<where it is "
                    "compared instead>\") when the network diff does not compare it)")
            elif isinstance(entry, Sub | Items):
                inner = _models_in(info.annotation)
                if entry.model not in inner:
                    missing.append(f"{where}: the table says {entry.model.__name__}, the "
                                   f"model {[m.__name__ for m in inner]}")
                todo.append((entry.model, where + ("[]" if isinstance(entry, Items) else ""),
                             entry.model))
            elif isinstance(entry, Leaf):
                for m in _models_in(info.annotation):
                    gap = sorted(set(m.model_fields) - set(entry.shows))
                    if gap:
                        missing.append(
                            f"{where}: {m.__name__}'s fields {gap} are not shown: the "
                            f"formatter of {cls.__name__}.{name} in {WHERE} must write "
                            "them (and list them in its Leaf's shows=)")
        for name in sorted(set(table) - set(cls.model_fields)):
            missing.append(f"{path or cls.__name__}: FIELDS[{cls.__name__}] names "
                           f"{name!r}, which the model has not: remove it")
    return missing


def nic_unlabelled(cls: type[BaseModel] = GuestNic) -> list[str]:
    return [f"guest NIC field {name} (GuestNic.{name}) has no label in a plan: add "
            f"\"{name}\": Leaf(\"<label>\") to NIC_FIELDS in {WHERE} and compare it in "
            "kvmnet.plan.guests._nic_changes through nic_change (or Skip(\"<where it is "
            "compared instead>\"))"
            for name in cls.model_fields if name not in NIC_FIELDS] + [
        f"NIC_FIELDS names {name!r}, which GuestNic has not: remove it"
        for name in NIC_FIELDS if name not in cls.model_fields]


def test_every_network_field_has_a_label() -> None:
    """A field added to the network model (or to a model in it) without a label in the
    plan's table fails here, saying what to add and where."""
    problems = unlabelled()
    assert not problems, "\n".join(problems)


def test_every_guest_nic_field_has_a_label() -> None:
    problems = nic_unlabelled()
    assert not problems, "\n".join(problems)


def test_a_field_without_a_label_is_named_with_what_to_add() -> None:
    """The check can fail: a network model with one more field (a QoS setting, say)."""
    grown = create_model("Network", __base__=Network, qos=(int | None, None))
    FIELDS[grown] = FIELDS[Network]
    try:
        assert unlabelled(grown) == [
            "qos (Network.qos) has no label in a plan: add \"qos\": Leaf(\"<what a "
            "person calls it>\", <formatter with its unit>) to FIELDS[Network] in "
            f"{WHERE} (or Skip(\"<where it is compared instead>\") when the network diff "
            "does not compare it)"]
    finally:
        del FIELDS[grown]
    nic = create_model("GuestNic", __base__=GuestNic, qos=(int | None, None))
    assert [p.split(":")[0] for p in nic_unlabelled(nic)] == [
        "guest NIC field qos (GuestNic.qos) has no label in a plan"]


def test_skips_say_where_the_field_is_compared() -> None:
    for table in (*FIELDS.values(), NIC_FIELDS):
        for name, entry in table.items():
            if isinstance(entry, Skip):
                assert len(entry.why) > 20, name


# -- what a plan says for each change ---------------------------------------------------

OWNER = "kvt-ux"
MAC = "52:54:00:00:00:05"
BASE: dict[str, Any] = {
    "mode": "nat", "bridge": "kvtux0", "mtu": 1500,
    "ipv4": {"address": "10.165.1.1/24", "dhcp": "10.165.1.100-10.165.1.199",
             "lease_time": "12h",
             "hosts": [{"mac": MAC, "name": "web", "ip": "10.165.1.5"}]},
    "dns": {"hosts": [{"ip": "10.165.1.50", "names": ["files.ux.test"]}],
            "txt": [{"name": "info", "value": "v1"}]},
}


def spec_of(net: dict[str, Any]) -> Spec:
    spec, _ = load_text(json.dumps({"owner": OWNER, "networks": {"kvt-ux-n": net}}), "t.yaml")
    return spec


def applied(net: dict[str, Any]) -> FakeBackend:
    """The fake after kvmnet applied a spec with this network."""
    fake = FakeBackend()
    spec = spec_of(net)
    report = run(make_plan(spec, read_state(fake)), fake, read_state(fake))
    assert report.ok
    return fake


def plan_of(fake: FakeBackend, net: dict[str, Any]) -> Plan:
    return make_plan(spec_of(net), read_state(fake))


def changed(**upd: Any) -> dict[str, Any]:
    net = json.loads(json.dumps(BASE))
    for path, v in upd.items():
        d = net
        *head, last = path.split("__")
        for k in head:
            d = d[k]
        d[last] = v
    return net


def one_action(p: Plan) -> tuple[list[str], list[dict[str, Any]]]:
    (a,) = [a for a in p.actions if not a.skipped]
    d = a.as_dict()
    return list(a.details), d["changes"]  # type: ignore[return-value]


CHANGES = [
    ("lease", changed(ipv4__lease_time="1h"),
     ["~ lease 12h -> 1h"],
     {"path": "ipv4.lease_time", "field": "ipv4.lease_time", "label": "lease",
      "old": {"expiry": 12, "unit": "hours"}, "new": {"expiry": 1, "unit": "hours"}}),
    ("mtu", changed(mtu=9000), ["~ MTU 1500 -> 9000"],
     {"path": "mtu", "field": "mtu", "label": "MTU", "old": 1500, "new": 9000}),
    ("dhcp-range", changed(ipv4__dhcp="10.165.1.50-10.165.1.99"),
     ["~ DHCP range 10.165.1.100-10.165.1.199 -> 10.165.1.50-10.165.1.99"],
     {"path": "ipv4.dhcp", "field": "ipv4.dhcp", "label": "DHCP range",
      "old": [{"start": "10.165.1.100", "end": "10.165.1.199", "lease_time": None}],
      "new": [{"start": "10.165.1.50", "end": "10.165.1.99", "lease_time": None}]}),
    ("reservation-address", changed(ipv4__hosts=[{"mac": MAC, "name": "web",
                                                  "ip": "10.165.1.6"}]),
     [f"~ reservation for web ({MAC}) 10.165.1.5 -> 10.165.1.6"],
     {"path": f"ipv4.hosts[{MAC}].ip", "field": "ipv4.hosts[].ip",
      "label": f"reservation for web ({MAC})", "old": "10.165.1.5", "new": "10.165.1.6"}),
    ("reservation-lease", changed(ipv4__hosts=[{"mac": MAC, "name": "web", "ip": "10.165.1.5",
                                                "lease_time": "30m"}]),
     [f"+ reservation for web ({MAC}) lease 30m"],
     {"path": f"ipv4.hosts[{MAC}].lease_time", "field": "ipv4.hosts[].lease_time",
      "label": f"reservation for web ({MAC}) lease", "old": None,
      "new": {"expiry": 30, "unit": "minutes"}}),
    ("reservation-gone", changed(ipv4__hosts=[]),
     [f"- reservation for web ({MAC}) 10.165.1.5"],
     {"path": f"ipv4.hosts[{MAC}]", "field": "ipv4.hosts[]",
      "label": f"reservation for web ({MAC})", "new": None,
      "old": {"ip": "10.165.1.5", "mac": MAC, "name": "web", "id": None, "lease_time": None}}),
    ("dns-host-names", changed(dns__hosts=[{"ip": "10.165.1.50",
                                           "names": ["files.ux.test", "f.ux.test"]}]),
     ["~ DNS host 10.165.1.50 files.ux.test -> files.ux.test, f.ux.test"],
     {"path": "dns.hosts[10.165.1.50].names", "field": "dns.hosts[].names",
      "label": "DNS host 10.165.1.50", "old": ["files.ux.test"],
      "new": ["files.ux.test", "f.ux.test"]}),
    ("txt", changed(dns__txt=[{"name": "info", "value": "v2 two words"}]),
     ['~ DNS TXT record info "v1" -> "v2 two words"'],
     {"path": "dns.txt[info].value", "field": "dns.txt[].value",
      "label": "DNS TXT record info", "old": "v1", "new": "v2 two words"}),
    ("domain", changed(domain="ux.test"), ["+ DNS domain ux.test"],
     {"path": "domain", "field": "domain", "label": "DNS domain", "old": None,
      "new": "ux.test"}),
    ("route", changed(ipv4__routes=[{"to": "10.166.0.0/16", "via": "10.165.1.9"}]),
     ["+ route to 10.166.0.0/16 10.165.1.9"],
     {"path": "ipv4.routes[10.166.0.0/16]", "field": "ipv4.routes[]",
      "label": "route to 10.166.0.0/16", "old": None}),
]


@pytest.mark.parametrize(("case", "net", "lines", "change"), CHANGES, ids=[c[0] for c in CHANGES])
def test_a_change_is_shown_by_its_name_with_units_and_as_data(
        case: str, net: dict[str, Any], lines: list[str], change: dict[str, Any]) -> None:
    fake = applied(BASE)
    details, changes = one_action(plan_of(fake, net))
    assert [d for d in details if not d.startswith(("+ dnsmasq", "- dnsmasq"))] == lines
    (got,) = changes
    assert {k: got[k] for k in change} == change
    assert got["text"] == lines[0][2:] and got["drift"] is False


def test_a_new_networks_fields_are_named_too() -> None:
    p = make_plan(spec_of(BASE), read_state(FakeBackend()))
    (a,) = p.actions
    assert a.details[:2] == ("+ mode nat", "+ STP off (kvmnet's default for a bridge only "
                             "guests use; `stp: true` turns it on)")
    assert list(a.details[2:]) == [
        "+ bridge kvtux0", "+ MTU 1500", "+ host address 10.165.1.1/24",
        "+ DHCP range 10.165.1.100-10.165.1.199", f"+ reservation for web ({MAC}) 10.165.1.5",
        "+ lease 12h", "+ DNS host 10.165.1.50 files.ux.test", '+ DNS TXT record info "v1"']


# -- drift: changed outside kvmnet ----------------------------------------------------------

def by_hand(fake: FakeBackend, edit: Any) -> None:
    """What `virsh net-edit` would do: the persistent XML changed behind kvmnet's back."""
    n = fake.networks["kvt-ux-n"]
    root = etree.fromstring(n.xml.encode())
    edit(root)
    n.xml = etree.tostring(root, encoding="unicode")


def set_mtu(size: str) -> Any:
    def edit(root: Any) -> None:
        root.find("mtu").set("size", size)
    return edit


def add_host(mac: str, ip: str) -> Any:
    def edit(root: Any) -> None:
        etree.SubElement(root.find("ip/dhcp"), "host", mac=mac, ip=ip)
    return edit


def test_a_value_changed_by_hand_is_labelled_changed_outside_kvmnet() -> None:
    fake = applied(BASE)
    by_hand(fake, set_mtu("9000"))
    by_hand(fake, add_host("52:54:00:00:00:09", "10.165.1.9"))
    details, changes = one_action(plan_of(fake, BASE))
    assert details == ["~ MTU 9000 -> 1500 (changed outside kvmnet)",
                       "- reservation for 52:54:00:00:00:09 10.165.1.9 (changed outside "
                       "kvmnet)"]
    assert [(c["path"], c["old"], c["new"], c["drift"]) for c in changes] == [
        ("mtu", 9000, 1500, True),
        ("ipv4.hosts[52:54:00:00:00:09]", {"ip": "10.165.1.9", "mac": "52:54:00:00:00:09",
                                           "name": None, "id": None, "lease_time": None},
         None, True)]


def test_a_change_in_the_spec_is_not_drift_and_both_say_so() -> None:
    fake = applied(BASE)
    details, _ = one_action(plan_of(fake, changed(mtu=9000)))
    assert details == ["~ MTU 1500 -> 9000"]
    by_hand(fake, set_mtu("1400"))
    details, _ = one_action(plan_of(fake, changed(mtu=9000)))
    assert details == ["~ MTU 1400 -> 9000 (changed outside kvmnet, and in the spec)"]


def test_the_record_follows_kvmnets_own_live_updates() -> None:
    """A reservation kvmnet added live is kvmnet's: when the spec drops it, that is the
    spec's change (the update wrote kvmnet's record: one more define, no restart)."""
    fake = applied(BASE)
    more = changed(ipv4__hosts=[*BASE["ipv4"]["hosts"],
                                {"mac": "52:54:00:00:00:07", "ip": "10.165.1.7"}])
    p = plan_of(fake, more)
    assert [a.kind for a in p.actions] == ["network.update"]
    fake.writes.clear()
    assert run(p, fake, read_state(fake)).ok
    assert fake.writes == ["networkUpdate add-last ip-dhcp-host on kvt-ux-n",
                           "record network kvt-ux-n"]
    assert [a.kind for a in plan_of(fake, more).actions] == []
    details, changes = one_action(plan_of(fake, BASE))
    assert details == ["- reservation for 52:54:00:00:00:07 10.165.1.7"]
    assert changes[0]["drift"] is False


def test_a_network_without_kvmnets_record_labels_nothing() -> None:
    """Defined by a kvmnet before records (or adopted and not defined since): no record,
    so nothing can tell drift from a change; the plan says neither."""
    fake = applied(BASE)
    by_hand(fake, lambda root: root.find(f"metadata/{{{KVMNET_NS}}}managed").attrib.pop(
        "applied"))
    by_hand(fake, set_mtu("9000"))
    details, changes = one_action(plan_of(fake, BASE))
    assert details == ["~ MTU 9000 -> 1500"] and changes[0]["drift"] is False


def test_the_record_is_on_kvmnets_mark() -> None:
    fake = applied(BASE)
    mark = etree.fromstring(fake.networks["kvt-ux-n"].xml.encode()).find(
        f"metadata/{{{KVMNET_NS}}}managed")
    assert mark is not None and mark.get("owner") == OWNER
    fmt, *tokens = mark.get("applied", "").split()
    assert fmt == "1" and len(tokens) == len(set(tokens)) > 20
    assert all(len(t) == 8 for t in tokens)


# -- plan --json, from the command line -----------------------------------------------------

def test_plan_json_carries_each_changed_field(tmp_path: Path) -> None:
    """test:///default's network `default`, adopted with an MTU and a shorter DHCP range:
    the redefine lists both changes as {path, field, label, old, new, text, drift}."""
    spec = tmp_path / "default.yaml"
    spec.write_text("owner: kvt-ux\nnetworks:\n  default:\n    adopt: true\n"
                    "    bridge: virbr0\n    mtu: 9000\n    ipv4:\n"
                    "      address: 192.168.122.1/24\n"
                    "      dhcp: 192.168.122.100-192.168.122.199\n")
    res = subprocess.run([str(KVMNET), "plan", str(spec), "-c", "test:///default", "--json"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    (redefine,) = [a for a in doc["actions"] if a["kind"] == "network.redefine"]
    assert redefine["changes"] == [
        {"path": "mtu", "field": "mtu", "label": "MTU", "old": None, "new": 9000,
         "text": "MTU 9000", "drift": False, "note": ""},
        {"path": "ipv4.dhcp", "field": "ipv4.dhcp", "label": "DHCP range",
         "old": [{"start": "192.168.122.2", "end": "192.168.122.254", "lease_time": None}],
         "new": [{"start": "192.168.122.100", "end": "192.168.122.199", "lease_time": None}],
         "text": "DHCP range 192.168.122.2-192.168.122.254 -> "
                 "192.168.122.100-192.168.122.199", "drift": False, "note": ""}]
    assert [d for d in redefine["details"] if "dnsmasq" not in d] == [
        "+ MTU 9000",
        "~ DHCP range 192.168.122.2-192.168.122.254 -> 192.168.122.100-192.168.122.199"]
    (adopt,) = [a for a in doc["actions"] if a["kind"] == "network.adopt"]
    assert adopt["changes"] == []


# -- OVN: every column and key kvmnet writes has a label ----------------------------------

OVERLAY = {
    "owner": OWNER, "ovn": {"northbound": "unix:/run/kvt-ux/nb.sock"},
    "networks": {"ov1": {
        "mode": "overlay", "mtu": 1400, "domain": "ov.ux.test",
        "ipv4": {"address": "10.165.9.1/24", "dhcp": "10.165.9.100-10.165.9.199"},
        "router": {"external": {"physnet": "phys", "address": "10.165.8.10/24",
                                "gateway": "10.165.8.254", "chassis": ["hv1"]}}}},
    "guests": {"web": {"interfaces": [{"network": "ov1", "ipv4": "10.165.9.11"}]}},
}


def test_every_ovn_column_and_key_kvmnet_writes_has_a_label() -> None:
    from kvmnet.plan.ovn_fields import OVN_FIELDS
    from kvmnet.render.overlay import wanted_nb

    spec, _ = load_text(json.dumps(OVERLAY), "ovn.yaml")
    nb = wanted_nb(spec)
    written = {"cidr", "addresses", "port_security", "dhcpv4_options", "type"}
    for row in (*nb.switches.values(), *nb.dhcp.values(), *nb.ports.values()):
        for col in ("other_config", "options", "external_ids"):
            written |= {f"{col}:{k}" for k in getattr(row, col, {})}
    assert {"options:mtu", "options:domain_name", "options:network_name"} <= written
    missing = sorted(written - set(OVN_FIELDS))
    assert not missing, (f"OVN columns or keys without a label in a plan: {missing}: add "
                         "each to OVN_FIELDS in src/kvmnet/plan/ovn_fields.py")
