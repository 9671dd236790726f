"""Table-driven plan cases, tests/cases/<name>/ (STYLE.md #7; test_plan_cases.py runs them).

Each case is a folder of three files:

    spec.yaml      the wanted spec (a plain kvmnet spec: `kvmnet plan` reads it too)
    live.yaml      the live state kvmnet plans against, and the case's arguments
    expected.yaml  what plan and apply give (generated: KVMNET_REGEN_GOLDEN=1 rewrites it,
                   keeping the hand-written `reason` a no-op case must give)

live.yaml, every key optional but `about`:

    about: why the case exists (one line)
    args: {adopt: [NAME], scope: [GLOB], allow_destroy: true}
    domains:           # defined first (kvmnet never creates guests)
      NAME: {running: true, nics: [{network|bridge: X, mac: M, model: virtio}],
             managed: [M],            # NICs a kvmnet from before owners recorded (no owner)
             records: [{mac: M, owner: O, index: I}]}   # ... and one that knew owners
    applied: {...}     # a spec kvmnet planned and applied on the fake before, for the
                       # case spec's owner unless the applied spec says `owner:`
    networks:          # then, verbatim: what libvirt holds (foreign networks, drift)
      NAME: {xml: "<network>...", active: true, autostart: false}
    after: {stop: [NAME], undefine: [NAME], autostart: {NAME: false}}   # behind kvmnet's back
    hand:              # ... and what `virsh net-edit` changes (drift: plan.drift)
      NAME: {set: {"mtu@size": "9000"}, add: {"ip/dhcp": "<host mac='M' ip='A'/>"}}
    host: {links: {NAME: {kind: bridge, addresses: [CIDR], ...}}, routes: [...],
           listening: [{proto: tcp, addr: 0.0.0.0, port: 22, dev: null, dual: false}],
           ssh_sessions: [ADDR]}   # a real host (is_test false); else like test:///
                                   # (sockets: kvmnet.backend.sockets)
    firewall: {installed: [FORWARD], rules: present|missing, hook: ok, legacy: false,
               backends: [nftables]}   # the port forwards kvmnet installed (state file)
    ovn: {switches: [...], ports: [...], dhcp: [...]}   # northbound rows (model.overlay)
    vlans: {native: false, bridges: {BR: [true, 1]}, ports: {vnet0: [[100, true, true]]},
            hook: ok}   # guests' VLANs on the host (model.vlan.VlanLive); records may
                        # carry tagged: "100,200" and untagged: "100"
    is_test: true      # LiveState.is_test; default: true unless `host` is given

A spec.yaml without `owner:` is owned by 'case' (not its path: the golden files would
depend on where the checkout is).

The fake (kvmnet.backend.fake) holds domains and networks; host, firewall and ovn
are laid over what kvmnet.backend.read reads of it, as service.ops.read_live does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from lxml import etree

from kvmnet.apply.runner import run
from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.read import read_state
from kvmnet.model.forward import STATE_VERSION, FirewallLive, RulesetFacts, parse_state
from kvmnet.model.live import (
    HostLink,
    HostRoute,
    HostState,
    LinkDns,
    Listener,
    LiveState,
    NamesLive,
    NicRecord,
)
from kvmnet.model.overlay import Dhcp, NbState, Port, Switch
from kvmnet.model.spec import Spec
from kvmnet.model.vlan import VlanLive, Vlans
from kvmnet.parse.domain import nic_records_xml
from kvmnet.plan import Plan, make_plan
from kvmnet.plan.forwards import wanted_rule_parts
from kvmnet.service.ops import load_spec
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load_text

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases"
FILES = ("expected.yaml", "live.yaml", "spec.yaml")
# what the fake holds; other doors are not faked (nic.vlans: a tap's VLAN table)
APPLIED_KINDS = ("network.", "nic.attach", "nic.update", "nic.detach", "nic.adopt",
                 "nwfilter.")


def case_dirs() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


def planner_kinds() -> set[str]:
    """Every action kind kvmnet.plan can emit, read from its source."""
    src = ROOT / "src" / "kvmnet"
    text = "\n".join(p.read_text() for p in (src / "plan").glob("*.py"))
    kinds = set(re.findall(r'"((?:network|nic|host|firewall|nwfilter)\.[a-z]+)"', text))
    ops = re.search(r"Op = Literal\[([^]]+)\]", (src / "model" / "overlay.py").read_text())
    assert ops is not None
    return kinds | {f"ovn.{o.strip().strip(chr(34))}" for o in ops[1].split(",")}


@dataclass
class Case:
    name: str
    spec: Spec
    live: dict[str, Any]

    @classmethod
    def load(cls, folder: Path) -> Case:
        spec, _pos, _warnings = load_spec(folder / "spec.yaml")
        if "owner" not in (yaml.safe_load((folder / "spec.yaml").read_text()) or {}):
            spec = spec.model_copy(update={"owner": "case"})
        live = yaml.safe_load((folder / "live.yaml").read_text()) or {}
        assert live.get("about"), f"{folder}/live.yaml: say what the case is about (about:)"
        return cls(folder.name, spec, live)

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.live.get("args") or {})

    def backend(self) -> FakeBackend:
        """The fake, holding the live state the case describes (no writes counted)."""
        fake = FakeBackend()
        for name, d in (self.live.get("domains") or {}).items():
            _load_domain(fake, name, d)
        if "applied" in self.live:
            _apply_before(fake, self.live["applied"], self.spec.owner)
        for n in (self.live.get("networks") or {}).values():
            fake.load_network(n["xml"], n.get("active", True), n.get("autostart", False),
                              n.get("persistent", True))
        after = self.live.get("after") or {}
        for name in after.get("stop", ()):
            fake.stop_network(name)
        for name in after.get("undefine", ()):
            fake.undefine_network(name)
        for name, on in (after.get("autostart") or {}).items():
            fake.set_network_autostart(name, on)
        for name, edits in (self.live.get("hand") or {}).items():
            _by_hand(fake, name, edits)
        fake.writes.clear()
        return fake

    def live_state(self, fake: FakeBackend) -> LiveState:
        """What kvmnet.backend.read reads of the fake, with the case's host, firewall and
        northbound rows laid over it."""
        live = read_state(fake)
        host = self.live.get("host")
        return replace(live, is_test=self.live.get("is_test", host is None),
                       host=_host(host) if host is not None else live.host,
                       firewall=_firewall(self.live["firewall"])
                       if "firewall" in self.live else None,
                       ovn=_nb(self.live["ovn"]) if "ovn" in self.live else None,
                       names=_names(self.live["names"]) if "names" in self.live else None,
                       vlans=_vlans(self.live["vlans"]) if "vlans" in self.live else None)

    def plan(self, fake: FakeBackend) -> Plan:
        return make_plan(self.spec, self.live_state(fake),
                         frozenset(self.args.get("adopt", ())),
                         tuple(self.args.get("scope", ())))


def _domain_xml(name: str, nics: list[dict[str, Any]], running: bool) -> str:
    root = etree.Element("domain", type="kvm")
    etree.SubElement(root, "name").text = name
    devices = etree.SubElement(root, "devices")
    for i, nic in enumerate(nics):
        kind = "network" if "network" in nic else "bridge"
        el = etree.SubElement(devices, "interface", type=kind)
        etree.SubElement(el, "mac", address=nic["mac"])
        src = etree.SubElement(el, "source", {kind: nic[kind]})
        if nic.get("portgroup"):
            src.set("portgroup", nic["portgroup"])
        if running:
            etree.SubElement(el, "target", dev=f"vnet{i}")
        if nic.get("model"):
            etree.SubElement(el, "model", type=nic["model"])
        if nic.get("mtu"):
            etree.SubElement(el, "mtu", size=str(nic["mtu"]))
    return etree.tostring(root, encoding="unicode")


def _load_domain(fake: FakeBackend, name: str, d: dict[str, Any]) -> None:
    nics = d.get("nics") or []
    running = d.get("running", False)
    managed = d.get("managed")
    records = [NicRecord(r["mac"], r.get("owner"), r.get("index"),
                         Vlans.from_attrs(r.get("tagged"), r.get("untagged")))
               for r in d.get("records", ())]
    records += [NicRecord(m) for m in managed or ()]
    fake.load_domain(_domain_xml(name, nics, False), running,
                     nic_records_xml(records) if records else None,
                     _domain_xml(name, nics, True) if running else None)


def _by_hand(fake: FakeBackend, name: str, edits: dict[str, dict[str, str]]) -> None:
    """Edit a network's persistent XML as `virsh net-edit` would (kvmnet is not told)."""
    net = fake.networks[name]
    root = etree.fromstring(net.xml.encode())
    for where, value in (edits.get("set") or {}).items():
        path, attr = where.split("@")
        el = root.find(path)
        if el is None:
            el = etree.SubElement(root, path)
        el.set(attr, value)
    for path, xml in (edits.get("add") or {}).items():
        root.find(path).append(etree.fromstring(xml))
    net.xml = etree.tostring(root, encoding="unicode")


def _apply_before(fake: FakeBackend, data: dict[str, Any], owner: str | None) -> None:
    """The fake as kvmnet's apply of `data` (a spec) left it."""
    spec, pos = load_text(yaml.safe_dump({"owner": owner, **data}), "live.yaml:applied")
    problems = errors(check(spec, pos, "live.yaml:applied"))
    assert not problems, problems
    live = read_state(fake)
    plan = make_plan(spec, live)
    assert not plan.errors, plan.errors
    report = run(plan, fake, live, allow_destroy=True)
    assert report.ok, [r.message for r in report.results]


def _host(data: dict[str, Any]) -> HostState:
    links = {}
    for i, (name, link) in enumerate((data.get("links") or {}).items(), 1):
        link = dict(link)
        links[name] = HostLink(name=name, index=link.pop("index", i), kind=link.pop("kind", ""),
                               master=link.pop("master", None), up=link.pop("up", True),
                               addresses=tuple(link.pop("addresses", ())),
                               dynamic=tuple(link.pop("dynamic", ())), **link)
    routes = tuple(HostRoute(**r) for r in data.get("routes") or ())
    listening = data.get("listening")
    return HostState(links=links, routes=routes, readable=True,
                     listening=None if listening is None else tuple(
                         Listener(**s) for s in listening),
                     ssh_sessions=tuple(data.get("ssh_sessions") or ()),
                     default_accept_ra=data.get("default_accept_ra"))


def _vlans(data: dict[str, Any]) -> VlanLive:
    """Guests' VLANs on the host: libvirt sets them (native) or not, bridges'
    (vlan_filtering, default PVID), taps' tables as [vid, pvid, untagged], the hook."""
    return VlanLive(native=bool(data.get("native")),
                    bridges={b: (bool(v[0]), int(v[1]))
                             for b, v in (data.get("bridges") or {}).items()},
                    ports={t: frozenset((int(e[0]), bool(e[1]), bool(e[2])) for e in es)
                           for t, es in (data.get("ports") or {}).items()},
                    hook=data.get("hook"))


def _names(data: dict[str, Any]) -> NamesLive:
    """The host's side of guests' names: nsswitch.conf's text, the NSS module's path,
    whether systemd-resolved runs and what it holds per bridge."""
    links = {b: LinkDns(tuple(v.get("servers", ())), tuple(v.get("domains", ())))
             for b, v in (data.get("links") or {}).items()}
    return NamesLive(data.get("nsswitch"), data.get("nss_module"),
                     bool(data.get("resolved")), links)


def _firewall(data: dict[str, Any]) -> FirewallLive:
    """A firewall where kvmnet installed `installed` (its state file), with the rules in
    place unless `rules: missing` (a reboot or a flush took them)."""
    installed = data.get("installed") or []
    facts = RulesetFacts(backends=tuple(data.get("backends", ("nftables",))),
                         nft_families=frozenset({4}))
    state = (json.dumps({"kvmnet": STATE_VERSION, "forwards": installed}, indent=2) + "\n"
             if installed else None)
    if installed and data.get("rules", "present") == "present":
        parts = frozenset(wanted_rule_parts(parse_state(state or ""), facts))
        facts = replace(facts, table=True, parts=parts)
    return FirewallLive(facts, state, data.get("hook", "ok" if installed else None),
                        data.get("error"), data.get("legacy", False))


def _nb(data: dict[str, Any]) -> NbState:
    def tuples(row: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {**row, **{k: tuple(row[k]) for k in keys if k in row}}

    switches = [Switch(**tuples(r, "ports")) for r in data.get("switches") or ()]
    ports = [Port(**tuples(r, "addresses", "port_security")) for r in data.get("ports") or ()]
    dhcp = [Dhcp(**r) for r in data.get("dhcp") or ()]
    return NbState(switches={s.name: s for s in switches}, ports={p.name: p for p in ports},
                   dhcp={d.network: d for d in dhcp})
