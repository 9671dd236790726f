"""Guest firewalls: named rule sets (`firewalls:`), enforced by libvirt's nwfilter.

The spec's models (FirewallRule, FirewallSet) and the names kvmnet gives its nwfilters.
A guest NIC uses sets (its own `firewalls:`, or its network's); kvmnet defines one
nwfilter per set (`kvmnet-set-NAME`) and one per combination of sets and anti-spoofing
that NICs use (`kvmnet-nic-HASH`, holding only filterrefs: which sets is in it, the name
is a hash of them because libvirt's filter names are XML NCNames), and points the NIC's
`<filterref>` at the combination. Redefining a set's filter makes libvirt re-instantiate
the rules of every running NIC that uses it; nothing else is touched.

Ownership: nwfilter XML holds no metadata element, so kvmnet's filters are those whose
name starts with `kvmnet-` AND whose UUID is `filter_uuid(name)` (a UUIDv5 of the name):
a filter someone else made under such a name has another UUID and is never changed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kvmnet.model.base import Model, one_or_list
from kvmnet.model.types import Name, Net, Ports

Direction = Literal["in", "out"]
FwProto = Literal["tcp", "udp", "icmp", "icmpv6", "all"]
FwAction = Literal["accept", "drop", "reject"]

PREFIX = "kvmnet-"
SET_PREFIX = "kvmnet-set-"
NIC_PREFIX = "kvmnet-nic-"
ANTISPOOF = "clean-traffic"          # libvirt's own filter: MAC, IP and ARP anti-spoofing
# rule priorities: a set's rules in order from FIRST_PRIORITY, its defaults last
FIRST_PRIORITY = 100
DEFAULT_PRIORITY = 1000
MAX_RULES = DEFAULT_PRIORITY - FIRST_PRIORITY - 1


class FirewallRule(Model):
    """One rule: traffic in (to the guest) or out (from it), of a protocol, to ports,
    with a peer; what happens to it. Stateful: replies to what it accepts pass too."""

    direction: Direction = Field(description="in: traffic to the guest; out: traffic "
                                 "the guest sends.")
    proto: FwProto = Field("all", description="tcp, udp, icmp, icmpv6, or all (IPv4 "
                           "and IPv6).")
    ports: list[Ports] = Field(default_factory=list, json_schema_extra=one_or_list,
                               description="tcp/udp: the guest's ports (in) or the "
                               "peer's (out); one, a range, or a list; default: all.",
                               examples=[[22, "8000-8010"]])
    peer: list[Net] = Field(default_factory=list, json_schema_extra=one_or_list,
                            description="Only from/to these subnets or addresses: one, "
                            "or a list (or give network:, guest: or host:); default: "
                            "anywhere.", examples=["192.168.1.0/24"])
    network: Name | None = Field(None, description="Only from/to this network's "
                                 "subnets (a network of the spec).", examples=["lan"])
    guest: Name | None = Field(None, description="Only from/to this guest's addresses "
                               "(its NICs' ipv4/ipv6 reservations).", examples=["db1"])
    host: bool = Field(False, description="Only from/to the host (its addresses on the "
                       "spec's networks).")
    action: FwAction = Field("accept", description="accept, drop (silently) or reject "
                             "(answered with an ICMP error or TCP reset).")
    stateful: bool = Field(True, description="Match with connection tracking: replies "
                           "to accepted traffic pass, and a removed rule also cuts the "
                           "connections it let in (libvirt's state matching); false: the "
                           "rule holds both ways, addresses mirrored, no tracking.")

    @field_validator("ports", "peer", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return [v] if isinstance(v, int | str) else v

    @model_validator(mode="after")
    def _one_peer(self) -> FirewallRule:
        peers = [k for k in ("network", "guest") if getattr(self, k) is not None]
        peers += ["peer"] * bool(self.peer) + ["host"] * self.host
        if len(peers) > 1:
            raise ValueError(f"a rule has one peer: it gives {' and '.join(peers)}; keep "
                             "one (or write two rules)")
        if self.ports and self.proto not in ("tcp", "udp"):
            raise ValueError(f"ports need proto: tcp or udp (this rule is {self.proto})")
        fam = {"icmp": 4, "icmpv6": 6}.get(self.proto)
        wrong = [str(p) for p in self.peer if fam and p.version != fam]
        if wrong:
            raise ValueError(f"{self.proto} is IPv{fam}; peer {', '.join(wrong)} is not")
        return self


class FirewallSet(Model):
    """A named rule set (a security group): its rules in order (the first that matches
    decides), and what happens to the rest of the traffic in each direction. A NIC
    with several sets gets the rules of all; the strictest default wins."""

    rules: list[FirewallRule] = Field(default_factory=list, max_length=MAX_RULES,
                                      description="The rules, first match first.")
    default_in: FwAction = Field("accept", description="What happens to traffic to "
                                 "the guest that no rule matched.")
    default_out: FwAction = Field("accept", description="What happens to traffic from "
                                  "the guest that no rule matched.")


STRICTNESS = {"accept": 0, "reject": 1, "drop": 2}


def set_filter(name: str) -> str:
    return SET_PREFIX + name


def nic_filter(sets: tuple[str, ...], antispoof: bool) -> str:
    """The combination's filter name: a hash of its sets in order and anti-spoofing."""
    import hashlib

    key = "+".join(sets) + (":antispoof" if antispoof else "")
    return NIC_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:12]


def filter_uuid(name: str) -> str:
    import uuid  # here: uuid imports platform (start-up)

    space = uuid.uuid5(uuid.NAMESPACE_URL, "https://kvmnet.invalid/nwfilter")
    return str(uuid.uuid5(space, name))


def owned(name: str, uuid_text: str | None) -> bool:
    """Is this nwfilter kvmnet's (its mark: prefix and the UUID of its name)?"""
    return name.startswith(PREFIX) and uuid_text == filter_uuid(name)
