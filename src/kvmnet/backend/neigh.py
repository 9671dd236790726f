"""Guests' addresses on every kind of network, each marked with where it came from.

    dhcp-lease  libvirt's dnsmasq leases: nat, route, open and isolated networks
    agent       the QEMU guest agent inside a running guest that has one configured
    neighbour   the host's neighbour (ARP/NDP) table, matched by the NIC's MAC: the
                only source for guests on bridged and macvtap networks without an agent

`fetch_*` read libvirt / netlink and return plain rows; `merge_addresses` is pure
and makes one row per (MAC, address), its `source` the most trusted one (in the
order above) and `sources` all of them. Errors of one source skip that source.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lxml import etree

from kvmnet.model.live import LiveNic, LiveState
from kvmnet.model.uri import is_local

SOURCES = ("dhcp-lease", "agent", "neighbour")
AGENT_CHANNEL = "org.qemu.guest_agent.0"
# NUD_INCOMPLETE, NUD_FAILED, NUD_NOARP: no usable MAC <-> address pairing
_NUD_BAD = 0x01 | 0x20 | 0x40
_NUD_NAMES = {0x01: "incomplete", 0x02: "reachable", 0x04: "stale", 0x08: "delay",
              0x10: "probe", 0x20: "failed", 0x40: "noarp", 0x80: "permanent"}


@dataclass(frozen=True)
class Neighbour:
    mac: str
    ip: str
    ifname: str | None = None
    state: str = ""


@dataclass(frozen=True)
class AgentAddr:
    domain: str
    mac: str
    ip: str
    prefix: int | None = None


# -- pure ---------------------------------------------------------------------------

def _useful(ip: str) -> bool:
    """Addresses worth showing: not loopback, link-local or multicast."""
    try:
        a = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return not (a.is_loopback or a.is_link_local or a.is_multicast or a.is_unspecified)


def canonical(ip: object) -> str:
    """The address's canonical text: what a guest agent or a lease reports is any string
    the guest chose (a scope id after '%' with escape sequences, say), so only the
    address itself is kept; '' when it is none."""
    try:
        return str(ipaddress.ip_address(str(ip).split("%", 1)[0]))
    except ValueError:
        return ""


def parse_agent(domain: str, ifaces: dict[str, Any] | None) -> list[AgentAddr]:
    """virDomain.interfaceAddresses(SRC_AGENT) -> addresses of NICs that have a MAC."""
    out: list[AgentAddr] = []
    for _name, info in sorted((ifaces or {}).items()):
        mac = (info.get("hwaddr") or "").lower()
        if not mac or mac == "00:00:00:00:00:00":
            continue
        for a in info.get("addrs") or ():
            ip = canonical(a.get("addr"))
            if ip and _useful(ip):
                out.append(AgentAddr(domain, mac, ip, a.get("prefix")))
    return out


def has_agent(domain_xml: str) -> bool:
    """The domain has a virtio channel for the QEMU guest agent."""
    root = etree.fromstring(domain_xml.encode())
    return bool(root.xpath("devices/channel/target[@type='virtio' and @name=$n]",
                           n=AGENT_CHANNEL))


def _nic_index(live: LiveState) -> dict[str, tuple[str, LiveNic]]:
    """MAC -> (domain, NIC), running config first (it has what is really attached)."""
    out: dict[str, tuple[str, LiveNic]] = {}
    for d in sorted(live.domains.values(), key=lambda d: d.name):
        for nic in (*d.live_nics, *d.nics):
            out.setdefault(nic.mac.lower(), (d.name, nic))
    return out


def merge_addresses(live: LiveState, leases: Sequence[dict[str, Any]],
                    neighbours: Iterable[Neighbour] = (), agent: Iterable[AgentAddr] = (),
                    only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per (MAC, address) over all sources, in network / MAC / address order.

    Every DHCP lease is kept (its MAC may belong to no domain: guest None); agent
    and neighbour addresses only for MACs of the domains' NICs. `only`: networks.
    """
    nics = _nic_index(live)
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def add(row: dict[str, Any]) -> None:
        key = (row["mac"], row["ip"])
        have = rows.get(key)
        if have is None:
            rows[key] = {**row, "sources": [row["source"]]}
            return
        if row["source"] not in have["sources"]:
            have["sources"].append(row["source"])
            have["sources"].sort(key=SOURCES.index)
            have["source"] = have["sources"][0]
        for k in ("prefix", "hostname", "expiry"):
            if have.get(k) is None and row.get(k) is not None:
                have[k] = row[k]

    for x in leases:
        mac = (x.get("mac") or "").lower()
        owner = nics.get(mac)
        add({**x, "mac": mac, "guest": x.get("guest") or (owner[0] if owner else None),
             "source": "dhcp-lease"})
    for a in agent:
        if a.mac in nics and _useful(a.ip):
            add(_row(nics[a.mac], a.mac, a.ip, a.prefix, "agent"))
    for n in neighbours:
        mac = n.mac.lower()
        if mac in nics and _useful(n.ip):
            add(_row(nics[mac], mac, n.ip, None, "neighbour"))
    out = [r for r in rows.values() if not only or r["network"] in only]
    return sorted(out, key=lambda r: (str(r["network"]), r["mac"], _ip_key(r["ip"])))


def _row(owner: tuple[str, LiveNic], mac: str, ip: str, prefix: int | None, source: str
         ) -> dict[str, Any]:
    return {"network": owner[1].source, "mac": mac, "ip": ip, "prefix": prefix,
            "hostname": None, "expiry": None, "guest": owner[0], "source": source}


def _ip_key(ip: str) -> tuple[int, int]:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (a.version, int(a))


def addresses_by_mac(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """MAC -> [{ip, source, sources}], best source first (for `show`)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["mac"], []).append(
            {"ip": r["ip"], "source": r["source"], "sources": list(r.get("sources", ()))})
    for v in out.values():
        v.sort(key=lambda a: (SOURCES.index(a["source"]), _ip_key(a["ip"])))
    return out


# -- effects ------------------------------------------------------------------------

def fetch_leases(conn: Any, live: LiveState, only: Sequence[str] | None = None
                 ) -> list[dict[str, Any]]:
    """libvirt's DHCP leases of the active networks that run dnsmasq."""
    import libvirt

    rows: list[dict[str, Any]] = []
    for name, ln in sorted(live.networks.items()):
        if only and name not in only:
            continue
        if not ln.active or ln.network.mode not in ("nat", "route", "open", "isolated"):
            continue
        try:
            leases = conn.raw.networkLookupByName(name).DHCPLeases()
        except libvirt.libvirtError:
            continue  # vanished, or a driver without leases (test:///)
        for x in leases:
            rows.append({"network": name, "mac": (x.get("mac") or "").lower(),
                         "ip": canonical(x.get("ipaddr")) or "?", "prefix": x.get("prefix"),
                         "hostname": x.get("hostname"), "expiry": x.get("expirytime"),
                         "source": "dhcp-lease"})
    return rows


def fetch_neighbours(netns: str | None = None) -> list[Neighbour]:
    """The host's ARP and NDP entries that pair a MAC with an address."""
    from kvmnet.backend.host import iproute

    out: list[Neighbour] = []
    with iproute(netns) as ipr:
        names = {m["index"]: m.get_attr("IFLA_IFNAME") for m in ipr.get_links()}
        for family in (socket.AF_INET, socket.AF_INET6):
            for m in ipr.get_neighbours(family=family):
                mac, ip = m.get_attr("NDA_LLADDR"), m.get_attr("NDA_DST")
                if not mac or not ip or m["state"] & _NUD_BAD:
                    continue
                out.append(Neighbour(str(mac).lower(), str(ip), names.get(m["ifindex"]),
                                     _NUD_NAMES.get(m["state"], str(m["state"]))))
    return out


def fetch_agent(conn: Any, live: LiveState) -> list[AgentAddr]:
    """Addresses the QEMU guest agent reports, for running domains that have one."""
    import libvirt

    out: list[AgentAddr] = []
    for name, d in sorted(live.domains.items()):
        if not d.running:
            continue
        try:
            dom = conn.raw.lookupByName(name)
            if not has_agent(dom.XMLDesc(0)):
                continue
            got = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
        except (libvirt.libvirtError, etree.XMLSyntaxError):
            continue  # gone, agent not running or not answering: skip this source
        out += parse_agent(name, got)
    return out


def host_is_local(conn: Any) -> bool:
    """The host's neighbour table says something about this connection's guests."""
    return not conn.is_test and is_local(str(conn.uri))


def guest_addresses(conn: Any, live: LiveState, only: Sequence[str] | None = None,
                    netns: str | None = None) -> list[dict[str, Any]]:
    """Every guest address kvmnet can find, merged (see the module docstring)."""
    from kvmnet.errors import LiveError

    leases = fetch_leases(conn, live, only)
    neighbours: list[Neighbour] = []
    if host_is_local(conn):
        try:
            neighbours = fetch_neighbours(netns)
        except LiveError:
            neighbours = []
    agent = fetch_agent(conn, live) if not conn.is_test else []
    return merge_addresses(live, leases, neighbours, agent, only)
