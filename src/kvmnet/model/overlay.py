"""What kvmnet keeps in OVN's northbound database, as plain frozen values.

One model for wanted and live (like `spec.model` for libvirt): `want.wanted_nb`
builds an `NbState` from a Spec, `nb.read_nb` parses one from the database, and
`diff.plan_nb` compares the two. Rows kvmnet owns carry OWNER in external_ids,
plus the network (and guest, NIC index) they stand for; rows without the mark
are never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from kvmnet.model.spec import Ovn

OWNER_KEY = "kvmnet:managed"
OWNER_VALUE = "true"
NETWORK_KEY = "kvmnet:network"
GUEST_KEY = "kvmnet:guest"
NIC_KEY = "kvmnet:nic"
ROLE_KEY = "kvmnet:role"        # rows of a network's router: "router", "external"
# Logical_Switch other_config keys kvmnet writes (others are left alone).
SWITCH_KEYS = ("subnet", "exclude_ips")

Table = Literal["switch", "dhcp", "port", "router"]
Op = Literal["create", "update", "remove", "adopt"]


def owned(external_ids: Mapping[str, str]) -> bool:
    return external_ids.get(OWNER_KEY) == OWNER_VALUE


def ours(external_ids: Mapping[str, str]) -> dict[str, str]:
    """The kvmnet:* part of an external_ids map (the part kvmnet compares and writes)."""
    return {k: v for k, v in external_ids.items() if k.startswith("kvmnet:")}


@dataclass(frozen=True)
class Switch:
    """A Logical_Switch: one per overlay network, named like the network."""

    name: str
    other_config: Mapping[str, str]
    external_ids: Mapping[str, str]
    uuid: str = ""                      # live rows only
    ports: tuple[str, ...] = ()         # live: names of all its ports (owned or not)

    @property
    def owned(self) -> bool:
        return owned(self.external_ids)


@dataclass(frozen=True)
class Dhcp:
    """A DHCP_Options row (OVN's native DHCPv4 server for one subnet)."""

    network: str                        # kvmnet:network of the row
    cidr: str
    options: Mapping[str, str]
    external_ids: Mapping[str, str]
    uuid: str = ""


@dataclass(frozen=True)
class Port:
    """A Logical_Switch_Port: one per guest NIC on an overlay network, named by
    render.interface_xml.overlay_port_id (libvirt's virtualport interfaceid)."""

    name: str
    switch: str                         # name of the switch it is on
    addresses: tuple[str, ...]          # "MAC IP" or "MAC dynamic"
    port_security: tuple[str, ...]
    dhcpv4: str | None                  # network of the kvmnet DHCP_Options it uses;
    #                                     "?" = a row kvmnet does not own, None = none
    external_ids: Mapping[str, str]
    uuid: str = ""
    up: bool = False                    # live: bound by an ovn-controller (guest running)
    dynamic: str = ""                   # live: the address northd chose for "dynamic"
    type: str = ""                      # "" (a VIF), "router", "localnet"
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def owned(self) -> bool:
        return owned(self.external_ids)


@dataclass(frozen=True)
class RouterPort:
    name: str
    mac: str
    networks: tuple[str, ...]                       # "10.240.1.1/24"
    gateway_chassis: tuple[tuple[str, int], ...] = ()   # (chassis name, priority)


@dataclass(frozen=True)
class Router:
    """A Logical_Router with its ports, static routes and NAT rules, compared and
    written as one value (its children are not shared with anything else)."""

    name: str
    external_ids: Mapping[str, str]
    ports: tuple[RouterPort, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()        # (ip_prefix, nexthop)
    nat: tuple[tuple[str, str, str], ...] = ()      # (type, external_ip, logical_ip)
    uuid: str = ""

    @property
    def owned(self) -> bool:
        return owned(self.external_ids)


@dataclass(frozen=True)
class NbState:
    """The northbound rows kvmnet looks at: all switches and ports (to find name
    clashes and foreign ports), and the DHCP_Options rows kvmnet owns."""

    switches: Mapping[str, Switch] = field(default_factory=dict)
    ports: Mapping[str, Port] = field(default_factory=dict)
    dhcp: Mapping[str, Dhcp] = field(default_factory=dict)     # owned, by network
    routers: Mapping[str, Router] = field(default_factory=dict)
    duplicates: tuple[Switch | Dhcp, ...] = ()                 # extra owned rows of a name


@dataclass(frozen=True)
class Change:
    """One northbound transaction; plan.py wraps it in an Action(kind='ovn.OP')."""

    op: Op
    table: Table
    key: str                            # switch name / network / port name
    target: str                         # ovn/switch/NET, ovn/dhcp/NET, ovn/port/NET/GUEST/IDX
    summary: str
    nb: Ovn
    columns: Mapping[str, object] = field(default_factory=dict)  # to write
    remove_keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # map keys to drop
    uuid: str = ""                      # the live row (update, remove, adopt)
    switch: str = ""                    # ports: the switch to add it to
    dhcp_network: str | None = None     # ports: use this network's kvmnet DHCP_Options
    router: Router | None = None        # routers: the whole router to (re)build
    details: tuple[str, ...] = ()
    impact: Literal["live", "disruptive"] = "live"
    needs_allow_destroy: bool = False
    skipped: str | None = None


@dataclass(frozen=True)
class NbFinding:
    path: tuple[str | int, ...]
    message: str
    severity: Literal["error", "warning"] = "error"


@dataclass(frozen=True)
class NbPlan:
    changes: tuple[Change, ...] = ()
    findings: tuple[NbFinding, ...] = ()
