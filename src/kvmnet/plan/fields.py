"""Every field the planner compares, with the name a person reads and its unit.

A network's diff is the fields of its model (kvmnet.model.spec.Network and the models
inside it), each looked up in FIELDS by its model class and name:

    Leaf(label, fmt)        one value, compared whole ("MTU", "lease": 12h)
    Sub(model, label)       a model inside: its own fields, labels prefixed ("DNS", "NAT")
    Items(model, key, item) a list of models matched by `key` (a reservation by its MAC),
                            each item's fields labelled after the item ("reservation for
                            web (52:54:00:...)"); an item that comes or goes is one line
    Skip(why)               not compared as a field here (why says where it is)

so a plan says `~ lease 12h -> 1h`, `~ MTU 1500 -> 9000`, `~ reservation for web
(52:54:00:12:34:56) 10.0.0.5 -> 10.0.0.6`. tests/unit/test_plan_fields.py walks the
models and fails for a field that has no entry, naming where to add it.

Each FieldChange also carries the data a script reads (`plan --json`): the path of the value
(`ipv4.hosts[52:54:00:12:34:56].ip`), the table's field (`ipv4.hosts[].ip`), the label,
the old and new value as JSON data, and whether the live value is not what kvmnet last
applied (drift: "changed outside kvmnet", see `unit` and plan.networks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from kvmnet.model.spec import (
    DhcpHost,
    Dns,
    DnsCname,
    DnsHost,
    DnsSrv,
    DnsTxt,
    DnsWildcard,
    IPConfig,
    Nat,
    Network,
    Portgroup,
    StaticRoute,
)
from kvmnet.plan.fieldfmt import Fmt, forwarders, lease, plain, quoted, ranges, seconds


def _srv_key(s: Mapping[str, Any]) -> str:
    """_ldap._tcp.lab.example at ldap1.lab.example: what libvirt matches an SRV by."""
    name = f"_{s.get('service')}._{s.get('protocol')}" + (f".{s['domain']}"
                                                          if s.get("domain") else "")
    return name + (f" at {s['target']}" if s.get("target") else "")


# -- the table ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Leaf:
    label: str
    fmt: Fmt = plain
    shows: tuple[str, ...] = ()   # a model's (or a list of models') fields fmt writes


@dataclass(frozen=True)
class Sub:
    model: type[BaseModel]
    label: str


@dataclass(frozen=True)
class Items:
    model: type[BaseModel]
    key: Callable[[Mapping[str, Any]], str]        # an item's identity
    item: Callable[[Mapping[str, Any]], str]       # its label ("reservation for web (...)")
    value: str = ""                                # the field that is "the item's value"
    in_label: tuple[str, ...] = ()                 # the fields its label shows
    named: bool = False                            # a mapping NAME -> item (key: NAME)


@dataclass(frozen=True)
class Skip:
    why: str


Entry = Leaf | Sub | Items | Skip


def _host_key(h: Mapping[str, Any]) -> str:
    return str(h.get("mac") or h.get("id") or h.get("name") or h.get("ip"))


def _host_label(h: Mapping[str, Any]) -> str:
    who = [h["name"]] if h.get("name") else []
    ident = h.get("mac") or (f"DUID {h['id']}" if h.get("id") else None)
    if ident and who:
        return f"reservation for {who[0]} ({ident})"
    if ident or who:
        return f"reservation for {ident or who[0]}"
    return "reservation"   # (by address alone: the address is its value)


_LEASE = Leaf("lease", lease, shows=("expiry", "unit"))
_XML_PREFIX = Skip("how libvirt's XML writes the prefix (prefix= or netmask=), no change "
                   "of its own")

FIELDS: dict[type[BaseModel], dict[str, Entry]] = {
    Network: {
        "mode": Leaf("mode"),
        "adopt": Skip("not in libvirt's XML: the network.adopt action"),
        "autostart": Skip("libvirt's autostart flag: the network.autostart action"),
        "bridge": Leaf("bridge"),
        "mac": Leaf("bridge MAC"),
        "stp": Leaf("STP"),
        "delay": Leaf("forward delay", seconds),
        "mtu": Leaf("MTU"),
        "domain": Leaf("DNS domain"),
        "domain_local": Leaf("DNS domain answered locally only"),
        "uplink": Leaf("uplink"),
        "devices": Leaf("macvtap devices"),
        "macvtap_mode": Leaf("macvtap mode"),
        "nat": Sub(Nat, "NAT"),
        "allow_guest_ipv6": Leaf("IPv6 between guests without an address"),
        "ipv4": Sub(IPConfig, ""),
        "ipv6": Sub(IPConfig, "IPv6"),
        "more_ips": Items(IPConfig, lambda c: str(c.get("address")),
                          lambda c: f"address block {c.get('address')}",
                          in_label=("address",)),
        "dns": Sub(Dns, "DNS"),
        "forwards": Skip("port forwards: the firewall.sync action"),
        "router": Skip("overlay networks are OVN's: the ovn.* actions"),
        "firewalls": Skip("guest firewalls: the nwfilter.* and nic.update actions"),
        "antispoof": Skip("guest firewalls: the nwfilter.* and nic.update actions"),
        "hosts": Skip("which hypervisors a network is on (hosts:), not a field of it"),
        "portgroups": Items(Portgroup, lambda p: str(p.get("name")),
                            lambda p: f"portgroup {p.get('name')}", named=True),
        "xml_extra": Skip("verbatim XML: its own '+/- xml_extra[...]' lines"),
    },
    Nat: {
        "addresses": Leaf("addresses"),
        "ports": Leaf("ports"),
        "ipv6": Leaf("of IPv6"),
    },
    IPConfig: {
        "address": Leaf("host address"),
        "dhcp": Leaf("DHCP range", ranges, shows=("start", "end", "lease_time")),
        "hosts": Items(DhcpHost, _host_key, _host_label, value="ip",
                       in_label=("mac", "id", "name")),
        "lease_time": _LEASE,
        "routes": Items(StaticRoute, lambda r: str(r.get("to")),
                        lambda r: f"route to {r.get('to')}", value="via", in_label=("to",)),
        "slaac": Leaf("SLAAC (guests' own addresses from router advertisements)"),
        "tftp": Leaf("TFTP root"),
        "bootp": Leaf("network boot"),
        "xml_prefix": _XML_PREFIX,
    },
    DhcpHost: {
        "ip": Leaf("address"),
        "mac": Leaf("MAC"),
        "name": Leaf("name"),
        "id": Leaf("DUID"),
        "lease_time": _LEASE,
    },
    StaticRoute: {
        "to": Leaf("to"),
        "via": Leaf("via"),
        "metric": Leaf("metric"),
        "xml_prefix": _XML_PREFIX,
    },
    Dns: {
        "enable": Leaf(""),
        "forward_plain_names": Leaf("forwarding of plain names"),
        "hosts": Items(DnsHost, lambda h: str(h.get("ip")),
                       lambda h: f"host {h.get('ip')}", value="names", in_label=("ip",)),
        "forwarders": Leaf("forwarders", forwarders, shows=("addr", "domain", "local_only")),
        "srv": Items(DnsSrv, _srv_key, lambda s: f"SRV record {_srv_key(s)}",
                     in_label=("service", "protocol", "domain", "target")),
        "txt": Items(DnsTxt, lambda t: str(t.get("name")),
                     lambda t: f"TXT record {t.get('name')}", value="value",
                     in_label=("name",)),
        "wildcards": Items(DnsWildcard, lambda w: str(w.get("domain")),
                           lambda w: f"wildcard *.{w.get('domain')}", value="ip",
                           in_label=("domain",)),
        "cnames": Items(DnsCname, lambda c: str(c.get("name")),
                        lambda c: f"alias {c.get('name')}", value="target",
                        in_label=("name",)),
        "ptr": Leaf("PTR records"),
    },
    DnsHost: {"ip": Leaf("address"), "names": Leaf("names")},
    DnsTxt: {"name": Leaf("name"), "value": Leaf("text", quoted)},
    DnsSrv: {"service": Leaf("service"), "protocol": Leaf("protocol"),
             "domain": Leaf("domain"), "target": Leaf("target"), "port": Leaf("port"),
             "priority": Leaf("priority"), "weight": Leaf("weight")},
    DnsWildcard: {"domain": Leaf("domain"), "ip": Leaf("address")},
    Portgroup: {"vlan": Leaf("VLAN"), "vlans": Leaf("VLANs (tagged)"),
                "native": Leaf("native VLAN"), "default": Leaf("default")},
    DnsCname: {"name": Leaf("name"), "target": Leaf("target")},
}
# (Lease, DhcpRange and DnsForwarder are compared whole: the Leaf that holds them names
# the fields its formatter writes, in `shows`)

# A guest NIC's fields, as plan.guests compares a live NIC with the spec's: each with the
# label its change is shown by (the key is the change's field), or Skip.
NIC_FIELDS: dict[str, Leaf | Skip] = {
    "network": Leaf("source"),           # with bridge: one value, "network NAME"
    "bridge": Leaf("source"),            # or "bridge NAME" (the change's field: source)
    "mac": Skip("the NIC's identity: a NIC with another MAC is another NIC (attach and "
                "detach)"),
    "model": Leaf("model"),
    "ipv4": Skip("a DHCP reservation on the NIC's network: network.update"),
    "ipv6": Skip("a DHCPv6 reservation on the NIC's network: network.update"),
    "portgroup": Leaf("portgroup"),
    "mtu": Leaf("MTU"),
    "firewalls": Leaf("firewall"),       # with antispoof: the NIC's nwfilter reference
    "antispoof": Leaf("firewall"),
    "vlan": Leaf("VLANs"),               # with vlans and native: one value, the NIC's
    "vlans": Leaf("VLANs"),              # VLANs as plan.vlans writes them (field: vlans)
    "native": Leaf("VLANs"),
}


# -- changes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldChange:
    """One field that differs (old: live, new: wanted; None: absent)."""

    path: str          # ipv4.hosts[52:54:00:12:34:56].ip
    field: str         # ipv4.hosts[].ip: the table's entry, the same for every item
    label: str         # reservation for web (52:54:00:12:34:56)
    old: Any
    new: Any
    fmt: Fmt = plain
    unit: str = ""     # what kvmnet's record of the applied value covers (plan.drift)
    drift: str = ""    # "" or why it counts as changed outside kvmnet
    note: str = ""     # when it takes effect, if not at once ("at the guest's next boot")

    @property
    def sign(self) -> str:
        return "+" if empty(self.old) else "-" if empty(self.new) else "~"

    @property
    def text(self) -> str:
        """MTU 1500 -> 9000; MTU 9000 (added or removed: the sign says which)."""
        if self.sign == "~":
            value = f"{self.fmt(self.old)} -> {self.fmt(self.new)}"
        else:
            value = self.fmt(self.new if self.sign == "+" else self.old)
        return f"{self.label} {value}".strip()

    @property
    def line(self) -> str:
        """The plan's detail line."""
        return f"{self.sign} {self.text}" + "".join(f" ({x})" for x in (self.note, self.drift)
                                                     if x)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "field": self.field, "label": self.label,
                "old": self.old, "new": self.new, "text": self.text,
                "drift": bool(self.drift), "note": self.note}


def empty(v: Any) -> bool:
    return v is None or v == [] or v == {}


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


@dataclass
class _Walk:
    out: list[FieldChange] = field(default_factory=list)

    def model(self, cls: type[BaseModel], old: Mapping[str, Any] | None,
              new: Mapping[str, Any] | None, path: str, pattern: str, label: str,
              unit: str) -> None:
        old, new = old or {}, new or {}
        for name, entry in FIELDS[cls].items():
            o, n = old.get(name), new.get(name)
            if isinstance(entry, Skip) or (empty(o) and empty(n)):
                continue
            p = f"{path}.{name}" if path else name
            f = f"{pattern}.{name}" if pattern else name
            if isinstance(entry, Leaf):
                if o != n:
                    self.out.append(FieldChange(p, f, _join(label, entry.label), o, n, entry.fmt,
                                           unit or p))
            elif isinstance(entry, Sub):
                self.model(entry.model, o, n, p, f, _join(label, entry.label), unit)
            else:
                self.items(entry, o, n, p, f, label, unit)

    def items(self, entry: Items, old: Any, new: Any, path: str, pattern: str,
              label: str, unit: str) -> None:
        olds, news = (keyed(entry, x) for x in (old, new))
        for k in [*olds, *(k for k in news if k not in olds)]:
            o, n = olds.get(k), news.get(k)
            if o == n:
                continue
            p, f = f"{path}[{k}]", f"{pattern}[]"
            item = _join(label, entry.item(n or o or {}))
            if o is None or n is None:
                self.out.append(FieldChange(p, f, item, o, n, _item_text(entry), unit or p))
            else:
                before = len(self.out)
                self.model(entry.model, o, n, p, f, item, unit or p)
                for i in range(before, len(self.out)):  # the item's value: no label of its own
                    c = self.out[i]
                    if entry.value and c.field == f"{f}.{entry.value}":
                        self.out[i] = FieldChange(c.path, c.field, item, c.old, c.new, c.fmt,
                                             c.unit)


def keyed(entry: Items, items: Any) -> dict[str, Any]:
    """An Items value by key: a list by entry.key, a mapping by its names."""
    if entry.named:
        return {str(k): {"name": k, **x} for k, x in dict(items or {}).items()}
    return {entry.key(x): x for x in items or ()}


def _item_text(entry: Items) -> Fmt:
    """A whole item that comes or goes: its value, then its other fields (those its
    label does not name already): `10.0.0.6 (lease 1h)`."""
    table = FIELDS[entry.model]

    def fmt(v: Any) -> str:
        val = table.get(entry.value)
        first = val.fmt(v.get(entry.value)) if isinstance(val, Leaf) and not empty(
            v.get(entry.value)) else ""
        rest = [_join(e.label, e.fmt(v[k])) for k, e in table.items()
                if isinstance(e, Leaf) and k != entry.value and k not in entry.in_label
                and not empty(v.get(k))]
        if not rest:
            return first
        return _join(first, f"({'; '.join(rest)})" if first else "; ".join(rest))

    return fmt


def diff(old: Network | None, new: Network, defaults: bool = True) -> list[FieldChange]:
    """Every field that differs between two networks (old None: a new network; then
    `defaults` False leaves out what the spec leaves at its default)."""
    skip = {"xml_extra"}
    a = old.model_dump(mode="json", exclude=skip) if old is not None else {}
    b = new.model_dump(mode="json", exclude=skip, exclude_defaults=not defaults)
    w = _Walk()
    w.model(Network, a, b, "", "", "", "")
    return w.out


def nic_change(field: str, old: Any, new: Any, note: str = "") -> FieldChange:
    """One field of a guest NIC that differs (plan.guests), labelled from NIC_FIELDS by
    the spec key it comes from ("mtu"; "network" for the source, "firewalls" for the
    firewall)."""
    entry = NIC_FIELDS[field]
    label = entry.label if isinstance(entry, Leaf) else field
    name = {"network": "source", "bridge": "source", "antispoof": "firewall",
            "firewalls": "firewall", "vlan": "vlans", "native": "vlans"}.get(field, field)
    return FieldChange(name, name, label, old, new, plain, name, note=note)
