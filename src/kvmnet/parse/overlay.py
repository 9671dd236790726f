"""Live NbState -> the overlay part of a Spec (pure): `plan` of the result
against the same database is empty.

A network comes back from its marked switch and DHCP options: the address is
server_id with the subnet's prefix, the DHCP ranges are the usable addresses
exclude_ips leaves free, lease_time/mtu/domain_name/server_mac from the options.
Guest NICs come from marked ports (kvmnet:guest, kvmnet:nic): at that index of
the guest's interfaces, replacing the br-int NIC with the same MAC that libvirt
shows (the `<virtualport>` one), or added when the guest is not in libvirt.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from kvmnet.model.overlay import (
    GUEST_KEY,
    NETWORK_KEY,
    NIC_KEY,
    ROLE_KEY,
    Dhcp,
    NbState,
    Router,
    Switch,
)
from kvmnet.model.spec import (
    Guest,
    GuestNic,
    IPConfig,
    Lease,
    Network,
    OverlayRouter,
    Ovn,
    Spec,
)
from kvmnet.render.interface import OVN_BRIDGE
from kvmnet.render.overlay import (
    DEFAULT_LEASE,
    INFINITE_LEASE,
    excluded,
    merge,
    router_names,
    server_mac,
)


def _spans(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split():
        a, _, b = part.partition("..")
        out.append((int(ipaddress.IPv4Address(a)), int(ipaddress.IPv4Address(b or a))))
    return merge(out)


def _lease(seconds: int) -> Lease | None:
    if seconds == DEFAULT_LEASE:
        return None
    if seconds == INFINITE_LEASE:
        return Lease(expiry=0)
    units: tuple[tuple[Literal["hours", "minutes"], int], ...] = (("hours", 3600),
                                                                   ("minutes", 60))
    for unit, n in units:
        if seconds % n == 0:
            return Lease(expiry=seconds // n, unit=unit)
    return Lease(expiry=seconds, unit="seconds")


def network_of(sw: Switch, d: Dhcp) -> tuple[Network, list[str]]:
    notes: list[str] = []
    subnet = ipaddress.IPv4Network(sw.other_config.get("subnet", d.cidr))
    server = d.options.get("server_id", str(subnet.network_address + 1))
    first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
    ex = _spans(sw.other_config.get("exclude_ips", ""))
    free: list[tuple[int, int]] = []
    cur = first
    for a, b in ex:
        if a > cur:
            free.append((cur, a - 1))
        cur = max(cur, b + 1)
    if cur <= last:
        free.append((cur, last))
    v4 = ipaddress.IPv4Address
    ranges = [f"{v4(a)}-{v4(b)}" for a, b in free]
    ipc: dict[str, Any] = {"address": f"{server}/{subnet.prefixlen}", "dhcp": ranges}
    lease = _lease(int(d.options.get("lease_time", DEFAULT_LEASE)))
    if lease is not None:
        ipc["lease_time"] = lease
    net: dict[str, Any] = {"mode": "overlay", "ipv4": IPConfig.model_validate(ipc)}
    if "mtu" in d.options:
        net["mtu"] = int(d.options["mtu"])
    if "domain_name" in d.options:
        net["domain"] = d.options["domain_name"].strip('"')
    n = Network.model_validate(net)
    if d.options.get("server_mac") != server_mac(sw.name, n):
        n = n.model_copy(update={"mac": d.options.get("server_mac")})
    assert n.ipv4 is not None
    if excluded(n.ipv4) != ex:
        notes.append(f"overlay network {sw.name}: exclude_ips {sw.other_config.get('exclude_ips')}"
                     " does not follow kvmnet's rule; plan will rewrite it")
    return n, notes


def router_of(r: Router, nb: NbState) -> OverlayRouter | None:
    names = router_names(r.name)
    gw = next((p for p in r.ports if p.name == names["gw"]), None)
    localnet = nb.ports.get(names["localnet"])
    if gw is None or localnet is None or "network_name" not in localnet.options:
        return None
    ext: dict[str, Any] = {
        "physnet": localnet.options["network_name"], "address": gw.networks[0],
        "chassis": [c for c, _ in gw.gateway_chassis]}
    default = [nh for prefix, nh in r.routes if prefix == "0.0.0.0/0"]
    if default:
        ext["gateway"] = default[0]
    return OverlayRouter.model_validate({"external": ext, "snat": any(
        t == "snat" for t, _, _ in r.nat)})


def import_overlay(nb: NbState, settings: Ovn) -> tuple[Spec, list[str]]:
    """A Spec of just the overlay networks and guest NICs kvmnet owns in `nb`."""
    notes: list[str] = []
    nets: dict[str, Network] = {}
    for name, sw in sorted(nb.switches.items()):
        if not sw.owned or ROLE_KEY in sw.external_ids:
            continue
        d = nb.dhcp.get(name)
        if d is None:
            notes.append(f"overlay network {name}: no DHCP options marked by kvmnet: left out")
            continue
        nets[name], more = network_of(sw, d)
        notes += more
        r = nb.routers.get(name)
        if r is not None and r.owned:
            router = router_of(r, nb)
            if router is None:
                notes.append(f"overlay network {name}: its router has no gateway port or "
                             "physnet: left out")
            else:
                nets[name] = nets[name].model_copy(update={"router": router})
    nics: dict[str, dict[int, GuestNic]] = {}
    for p in nb.ports.values():
        ids = p.external_ids
        if not p.owned or ids.get(NETWORK_KEY) not in nets or GUEST_KEY not in ids:
            continue
        mac, _, ip = (p.addresses[0] if p.addresses else "").partition(" ")
        nic = GuestNic(network=ids[NETWORK_KEY], mac=mac,
                       ipv4=None if ip in ("", "dynamic") else ip)
        nics.setdefault(ids[GUEST_KEY], {})[int(ids.get(NIC_KEY, "0"))] = nic
    guests = {g: Guest(interfaces=[by_idx[i] for i in sorted(by_idx)])
              for g, by_idx in sorted(nics.items())}
    return Spec(networks=nets, guests=guests, ovn=settings), notes


def merge_overlay(spec: Spec, overlay: Spec) -> Spec:
    """`spec` (imported from libvirt) with the overlay networks and NICs added: a
    libvirt NIC on br-int with the port's MAC becomes the overlay NIC."""
    guests = dict(spec.guests)
    for g, og in overlay.guests.items():
        cur = list(guests[g].interfaces) if g in guests else []
        for onic in og.interfaces:
            same = next((i for i, n in enumerate(cur)
                         if n.bridge == OVN_BRIDGE and n.mac == onic.mac), None)
            if same is not None:
                cur[same] = onic.model_copy(update={"model": cur[same].model,
                                                    "mtu": cur[same].mtu})
            else:
                cur.append(onic)
        guests[g] = Guest(interfaces=cur)
    return spec.model_copy(update={"networks": {**spec.networks, **overlay.networks},
                                   "guests": guests, "ovn": overlay.ovn})
