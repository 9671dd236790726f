"""Host bridges for NetworkManager: keyfiles, one profile for the bridge and
one per port, under /etc/NetworkManager/system-connections/; a bond (host.bonds) or a
VLAN (host.vlans) in a bridge is that port's profile, and a bond has one per NIC.

UUIDs are uuid5 of the bridge (and port) name, so rendering again gives the
same profile. Ports carry both spellings of the link to their bridge:
controller/port-type (NM 1.46+) and master/slave-type (older NM).
NetworkManager ignores keyfiles that are not mode 0600 (see hostconf.file_mode).
"""

from __future__ import annotations

import uuid

from kvmnet.errors import RenderError
from kvmnet.model.spec import Host, HostBond, HostBridge, Spec
from kvmnet.render.guard import require_one_line, require_vlan_ids
from kvmnet.render.host_common import Section, by_family, ini, port_mtu, require_links

DIR = "etc/NetworkManager/system-connections"
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://kvmnet.invalid/networkmanager")
NM_FORWARD_DELAY = (2, 30)  # NM rejects a profile outside this range


def profile_uuid(bridge: str, port: str | None = None, kind: str = "bridge") -> str:
    """Stable UUID of kvmnet's profile for a bridge (a bond, a VLAN: kind), or for one
    of its ports."""
    key = f"{kind}/{bridge}" if port is None else f"{kind}/{bridge}/port/{port}"
    return str(uuid.uuid5(UUID_NAMESPACE, key))


def profile_id(bridge: str, port: str | None = None) -> str:
    """The profile's name (its id= and file name): kvmnet-BR, kvmnet-BR-port-PORT.
    Bridge br-port-eth1 and port eth1 of bridge br would share one: spec.checks
    refuses that, and render_networkmanager never writes one file for both."""
    return f"kvmnet-{bridge}" if port is None else f"kvmnet-{bridge}-port-{port}"


def render_networkmanager(spec: Spec) -> dict[str, str]:
    """kvmnet-BR.nmconnection and kvmnet-BR-port-PORT.nmconnection for every bridge;
    kvmnet-BOND and kvmnet-BOND-port-NIC for every bond, kvmnet-VLAN for every VLAN."""
    host = spec.host
    require_one_line("NetworkManager keyfiles of host.bridges", host.bridges, host.bonds,
                     host.vlans)
    require_links("NetworkManager keyfiles", host)
    out: dict[str, str] = {}

    def put(pid: str, text: str) -> None:
        path = f"{DIR}/{pid}.nmconnection"
        if path in out:
            raise RenderError(f"two NetworkManager profiles would be named {pid}: rename "
                              "a host bridge")
        out[path] = text

    bridge_of = {p: br for br, hb in host.bridges.items() for p in hb.ports}
    for name, hb in host.bridges.items():
        put(profile_id(name), _bridge(name, hb))
        for port in hb.ports:
            if port not in host.bonds and port not in host.vlans:
                put(profile_id(name, port), _port(name, port, hb.mtu, hb=hb))
    mtu = port_mtu(host)
    for name, bond in host.bonds.items():
        put(profile_id(name), _bond(name, bond, bridge_of.get(name), mtu.get(name),
                                    host.bridges.get(bridge_of.get(name, ""))))
        for port in bond.ports:
            put(profile_id(name, port), _port(name, port, mtu.get(name), "bond"))
    for name in host.vlans:
        put(profile_id(name), _vlan(name, host, bridge_of.get(name), mtu.get(name)))
    return out


def _controller(bridge: str | None, kind: str = "bridge") -> list[tuple[str, str]]:
    """A port's link to its bridge or bond: both spellings (NM 1.46+, older NM)."""
    if bridge is None:
        return []
    return [("controller", bridge), ("port-type", kind), ("master", bridge),
            ("slave-type", kind)]


def _no_ip(bridge: str | None, hb: HostBridge | None = None) -> list[Section]:
    """A link without addresses of its own: a port has none; anything else says so."""
    if bridge is not None:
        return [("bridge-port", _port_vlans(hb))]
    return [("ipv4", [("method", "disabled")]), ("ipv6", [("method", "ignore")])]


def _bond(name: str, bond: HostBond, bridge: str | None, mtu: int | None,
          hb: HostBridge | None = None) -> str:
    opts = [("mode", bond.mode), ("miimon", str(bond.miimon))]
    if bond.primary is not None:
        opts.append(("primary", bond.primary))
    if bond.lacp_rate is not None:
        opts.append(("lacp_rate", bond.lacp_rate))
    if bond.xmit_hash_policy is not None:
        opts.append(("xmit_hash_policy", bond.xmit_hash_policy))
    sections: list[Section] = [("connection", [
        ("id", profile_id(name)), ("uuid", profile_uuid(name, kind="bond")),
        ("type", "bond"), ("interface-name", name), *_controller(bridge)])]
    if mtu is not None:
        sections.append(("ethernet", [("mtu", str(mtu))]))
    sections.append(("bond", opts))
    return ini(sections + _no_ip(bridge, hb))


def _vlan(name: str, host: Host, bridge: str | None, mtu: int | None) -> str:
    v = host.vlans[name]
    sections: list[Section] = [("connection", [
        ("id", profile_id(name)), ("uuid", profile_uuid(name, kind="vlan")),
        ("type", "vlan"), ("interface-name", name), *_controller(bridge)])]
    if mtu is not None:
        sections.append(("ethernet", [("mtu", str(mtu))]))
    sections.append(("vlan", [("parent", v.link), ("id", str(v.id))]))
    return ini(sections + _no_ip(bridge, host.bridges.get(bridge or "")))


def _bridge(name: str, hb: HostBridge) -> str:
    comments: list[str] = []
    sections: list[Section] = [("connection", [
        ("id", profile_id(name)),
        ("uuid", profile_uuid(name)),
        ("type", "bridge"),
        ("interface-name", name),
    ])]
    ethernet = [("mtu", str(hb.mtu))] if hb.mtu is not None else []
    if hb.mac is not None:  # the bridge's own MAC (NM's bridge.mac-address is deprecated)
        ethernet.append(("cloned-mac-address", hb.mac))
    if ethernet:
        sections.append(("ethernet", ethernet))
    bridge = [("stp", "true" if hb.stp else "false")]
    fd = hb.forward_delay
    if fd is not None and NM_FORWARD_DELAY[0] <= fd <= NM_FORWARD_DELAY[1]:
        bridge.append(("forward-delay", str(fd)))
    elif fd is not None:
        comments.append(f"forward_delay {fd} left out: NetworkManager takes 2-30 s "
                        "(with STP off, ports forward at once anyway)")
    if hb.vlan_filtering:
        require_vlan_ids("NetworkManager keyfiles", hb.pvid, *hb.vlans)
        bridge += [("vlan-filtering", "true"), ("vlan-default-pvid", str(hb.pvid))]
    sections.append(("bridge", bridge))
    sections.append(("ipv4", _ip(hb, 4)))
    sections.append(("ipv6", _ip(hb, 6)))
    return ini(sections, comments)


def _ip(hb: HostBridge, version: int) -> list[tuple[str, str]]:
    """[ipv4]/[ipv6]: the gateway rides on the family's first address (address1=A,GW)."""
    addrs = by_family(hb.address, version)
    dns = [d for d in hb.dns if d.version == version]
    gw = hb.gateway_for(version)
    method = _method(hb, version, bool(addrs), bool(dns or gw))
    if method in ("disabled", "ignore"):
        return [("method", method)]
    if version == 6 and hb.slaac:  # the kernel's EUI-64 address, as the port had
        items_ra = [("addr-gen-mode", "eui64")]
    else:
        items_ra = []
    items: list[tuple[str, str]] = []
    for i, a in enumerate(addrs, start=1):
        items.append((f"address{i}", f"{a},{gw}" if i == 1 and gw else str(a)))
    if gw is not None and not addrs:
        items.append(("gateway", str(gw)))
    if dns:
        items.append(("dns", "".join(f"{d};" for d in dns)))
    metric_here = gw is not None or (version == 4 and hb.dhcp)
    if hb.metric is not None and metric_here:
        items.append(("route-metric", str(hb.metric)))
    items += items_ra
    items.append(("method", method))
    return items


def _method(hb: HostBridge, version: int, static: bool, needs_ip: bool) -> str:
    """NetworkManager's method; for IPv6 `auto` takes router advertisements (in NM
    itself, so also while the host forwards), `manual` ignores them."""
    if version == 4:
        if hb.dhcp:
            return "auto"
        return "manual" if static else "disabled"  # a v4 gateway alone is meaningless
    if hb.slaac is not None:
        return "auto" if hb.slaac else "manual" if static else "disabled"
    if static:
        return "manual"
    # IPv6 DNS or a gateway but no address: let the kernel's SLAAC provide one.
    return "auto" if needs_ip else "ignore"


def _port(master: str, port: str, mtu: int | None, kind: str = "bridge",
          hb: HostBridge | None = None) -> str:
    """A NIC in a bridge (kind bridge) or in a bond (kind bond)."""
    sections: list[Section] = [("connection", [
        ("id", profile_id(master, port)),
        ("uuid", profile_uuid(master, port, kind)),
        ("type", "ethernet"),
        ("interface-name", port),
        *_controller(master, kind),
    ])]
    if mtu is not None:
        sections.append(("ethernet", [("mtu", str(mtu))]))
    if kind == "bridge":
        sections.append(("bridge-port", _port_vlans(hb)))
    return ini(sections)


def _port_vlans(hb: HostBridge | None) -> list[tuple[str, str]]:
    """The VLANs a port of a VLAN-aware bridge carries tagged (NM adds the bridge's
    vlan-default-pvid untagged itself)."""
    if hb is None or not hb.vlan_filtering or not hb.vlans:
        return []
    require_vlan_ids("NetworkManager keyfiles", *hb.vlans)
    return [("vlans", ",".join(str(v) for v in hb.vlans))]
