"""The host: bridges kvmnet builds from its NICs, and the checks that new networks,
bridges and MACs do not collide with what the host and libvirt already have."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from kvmnet.model.live import HostLink, LiveState
from kvmnet.model.spec import Host, HostBridge, Spec
from kvmnet.plan.core import Action, Ctx
from kvmnet.plan.host_lower import first_nic, lower_diff, nics_below, stranded

LIBVIRT_BRIDGED = ("nat", "route", "open", "isolated")
PROTO_KERNEL, PROTO_RA = 2, 9   # routes the kernel made, or learned from an advertisement


def plan_host_bridges(ctx: Ctx) -> None:
    """A bridge that is missing, a port not in it yet, addresses still on a port or
    missing on the bridge -> one host.bridge action: apply moves the ports in live
    (their addresses and routes follow) and rolls back unless confirmed."""
    host = ctx.spec.host
    # bridges over bonds and NICs first: a VLAN's bond may be theirs to make
    order = sorted(host.bridges, key=lambda b: any(p in host.vlans
                                                    for p in host.bridges[b].ports))
    for br in order:
        hb = host.bridges[br]
        if ctx.live.is_test:
            ctx.actions.append(Action(
                "host.bridge", f"host/{br}", "host",
                f"create host bridge {br} with ports {', '.join(hb.ports) or '(none)'}",
                skipped="test:/// connection: the real host is not changed"))
            continue
        if not ctx.live.host.readable:
            continue
        details = _bridge_diff(ctx, br, hb)
        if details:
            ctx.actions.append(Action(
                "host.bridge", f"host/{br}", "host",
                f"move {', '.join(hb.ports) or '(no ports)'} into host bridge {br} live "
                "(addresses and routes follow; rolled back unless confirmed)",
                tuple(details), host=pinned_host(ctx.spec.host, ctx.live.host.links)))


def port_mac(hb: HostBridge, links: Mapping[str, HostLink], host: Host | None = None
             ) -> tuple[str, str] | None:
    """(MAC, where it comes from) the bridge gets: the spec's mac:, else its first port's
    permanent MAC (its current one when the kernel knows no permanent one). None when
    neither is known (no ports, or the port is missing)."""
    if hb.mac is not None:
        return hb.mac, "the spec's mac"
    for port in [first_nic(host, p) for p in hb.ports] if host else hb.ports:
        link = links.get(port)
        if link is not None and (link.perm_mac or link.mac):
            return (link.perm_mac or link.mac or "",
                    f"{port}'s {'permanent' if link.perm_mac else 'current'} MAC")
    return None


def pinned_host(host: Host, links: Mapping[str, HostLink]) -> Host:
    """host with every bridge's mac: filled in (port_mac): the files apply writes pin it,
    so that after a reboot the bridge has the MAC it had live (networkd would otherwise
    derive one from /etc/machine-id, and a DHCP server give the host a new address)."""
    bridges = {}
    for br, hb in host.bridges.items():
        mac = port_mac(hb, links, host)
        bridges[br] = hb if mac is None else hb.model_copy(update={"mac": mac[0]})
    return host.model_copy(update={"bridges": bridges})


def _bridge_diff(ctx: Ctx, br: str, hb: HostBridge) -> list[str]:
    host = ctx.live.host
    path: tuple[str | int, ...] = ("host", "bridges", br)
    link = host.links.get(br)
    out: list[str] = []
    if link is None:
        delay = f", forward delay {hb.forward_delay} s" if hb.forward_delay is not None else ""
        mac = port_mac(hb, host.links, ctx.spec.host)
        pin = f", MAC {mac[0]} ({mac[1]})" if mac else ""
        out.append(f"+ bridge {br}: stp {'on' if hb.stp else 'off'}{delay}{pin}"
                   + _filtering(hb))
    elif link.kind != "bridge":
        ctx.error(path, f"{br} exists on the host as a {link.kind or 'ethernet'} link, not "
                  "a bridge: pick another bridge name")
        return []
    elif link.vlan_filtering is not None and link.vlan_filtering != hb.vlan_filtering:
        ctx.error((*path, "vlan_filtering"), f"{br} exists with VLAN filtering "
                  f"{'on' if link.vlan_filtering else 'off'}: kvmnet sets it only on a "
                  "bridge it makes (turning it on live would cut off every port's "
                  f"VLANs at once); write vlan_filtering: {str(link.vlan_filtering).lower()}"
                  f", or delete {br} from the console and apply again")
    moved: list[str] = []
    spec_host = ctx.spec.host
    out += _lower(ctx, br, path)
    for port in nics_below(spec_host, br):
        i = hb.ports.index(port) if port in hb.ports else None
        where = (*path, "ports", i) if i is not None else _bond_path(spec_host, port)
        pl = host.links.get(port)
        problem = _port_problem(port, pl, br)
        if i is None and pl is not None and pl.master in spec_host.bonds:
            problem = None  # (in its bond: lower_diff looked at it)
        if pl is None or problem:
            if i is not None:
                ctx.error(where, problem or f"{port} is missing")
            continue
        if pl.master != br and i is not None:
            out.append(f"~ {port}: enslave to {br}")
        _session_guard(ctx, where, port, pl, hb, br)
        for a in pl.addresses:
            if not _v6_link_local(a):  # the kernel makes those per link
                out.append(f"~ address {a}: {port} -> {br}")
                moved.append(a)
        out += [f"~ route {r.dst} via {r.gateway}"
                + (f" metric {r.metric}" if r.metric is not None else "") + f": {port} -> {br}"
                for r in host.routes if r.dev == port and r.gateway and r.proto not in
                (PROTO_KERNEL, PROTO_RA)]  # (migrate moves what someone configured)
    have = {ipaddress.ip_interface(a) for a in [*(link.addresses if link else ()), *moved]}
    out += [f"+ address {a} on {br}" for a in hb.address if a not in have]
    dynamic = {a for p in hb.ports if p in host.links for a in host.links[p].dynamic}
    for a in moved:
        _kept_after_reboot(ctx, path, br, hb, a, a in dynamic)
    if hb.slaac:
        _accept_ra(ctx, path, br, hb, link)
        _same_slaac_address(ctx, path, br, hb)
    return out


def _same_slaac_address(ctx: Ctx, path: tuple[str | int, ...], br: str,
                        hb: HostBridge) -> None:
    """The bridge makes the SLAAC address the port had only if both derive it from the
    MAC (EUI-64): a port with stable-privacy or random addresses gets another one."""
    port = ctx.live.host.links.get(hb.ports[0]) if hb.ports else None
    if port is None or not any(ipaddress.ip_interface(a).version == 6 for a in port.dynamic):
        return
    if hb.mac is not None and hb.mac.lower() not in (port.mac, port.perm_mac):
        ctx.warn((*path, "mac"), f"mac: {hb.mac} is not {port.name}'s MAC, so {br} gets "
                 f"another SLAAC address than {port.name} has (the moved one stays until "
                 f"its lifetime ends): remove mac: to keep {port.name}'s")
    if port.addr_gen_mode in (None, 0, 1):
        return
    ctx.warn((*path, "slaac"), f"{port.name} makes its IPv6 addresses with "
             f"{'stable privacy' if port.addr_gen_mode == 2 else 'random'} interface ids "
             f"(addr_gen_mode {port.addr_gen_mode}), not from its MAC: {br} gets another "
             "SLAAC address at the next router advertisement (the moved one stays until its "
             "lifetime ends). Point DNS and peers at a static address (address:), or set "
             f"net.ipv6.conf.{port.name}.addr_gen_mode=0 first")


def _kept_after_reboot(ctx: Ctx, path: tuple[str | int, ...], br: str, hb: HostBridge,
                       cidr: str, dynamic: bool) -> None:
    """An address that moves live must come back from the files after a reboot: in
    address:, or learned again (DHCP for IPv4, SLAAC for IPv6)."""
    a = ipaddress.ip_interface(cidr)
    if a in hb.address or (a.version == 4 and hb.dhcp) or (a.version == 6 and hb.slaac):
        return
    if a.version == 6 and dynamic:
        ctx.warn((*path, "address"), f"{cidr} moves to {br} live, but it was learned by "
                 "SLAAC and the spec does not say slaac: true, so it is gone after a "
                 f"reboot: write slaac: true under host.bridges.{br} (or add it to address:)")
        return
    ctx.warn((*path, "address"), f"{cidr} moves to {br} live but is not in the spec, "
             f"so it is gone after a reboot: add it to host.bridges.{br}.address")


def _accept_ra(ctx: Ctx, path: tuple[str | int, ...], br: str, hb: HostBridge,
               link: HostLink | None) -> None:
    """slaac: true live needs the kernel to take router advertisements on the bridge:
    accept_ra 1 (not while the host forwards IPv6, as it does for libvirt's IPv6 networks)
    or 2. A new bridge starts with net.ipv6.conf.default.accept_ra."""
    host = ctx.live.host
    ra = link.accept_ra if link is not None else host.default_accept_ra
    forwards = any(ln.forwarding6 for ln in host.links.values()) or any(
        n.ipv6 is not None and n.mode in LIBVIRT_BRIDGED for n in ctx.spec.networks.values())
    if ra is None or ra == 2 or (ra == 1 and not forwards):
        return
    why = ("the host forwards IPv6 (libvirt's IPv6 networks turn it on), and then the kernel "
           "takes them only with accept_ra=2" if ra == 1 else "accept_ra is 0")
    first = (f"sysctl -w net.ipv6.conf.{br}.accept_ra=2" if link is not None else
             "sysctl -w net.ipv6.conf.default.accept_ra=2 before apply (a new bridge takes "
             f"the default; or net.ipv6.conf.{br}.accept_ra=2 right after)")
    ctx.warn((*path, "slaac"), f"{br} would ignore router advertisements live: {why}, so its "
             "SLAAC address and IPv6 default route lapse until the written files take over "
             f"at a reboot. Run {first}, and keep it in /etc/sysctl.d/ "
             f"(net.ipv6.conf.{br}.accept_ra = 2); `kvmnet doctor` checks it")


def _session_guard(ctx: Ctx, path: tuple[str | int, ...], port: str, link: HostLink,
                   hb: HostBridge, bridge: str) -> None:
    """Refuse to move an address an SSH session is open to (the kernel's socket table,
    kvmnet.backend.sockets) when the spec gives no gateway of its IP version (nor DHCP,
    nor SLAAC for IPv6): the default route would not come back on the bridge after a
    reboot. A session to the port's IPv6 link-local address is bound to the port: it
    ends when the port joins the bridge, gateway or not."""
    on_port = {ipaddress.ip_interface(a).ip: a for a in link.addresses}
    sessions = {ipaddress.ip_address(s) for s in ctx.live.host.ssh_sessions}
    for ip in sorted(sessions & set(on_port), key=lambda a: (a.version, a)):
        sess = str(ip)
        if ip.version == 6 and ip.is_link_local:
            ctx.error(path, f"an SSH session is open to {sess}, the link-local address of "
                      f"{port}: it is bound to {port} and ends when {port} joins "
                      f"{bridge}. Connect to a global address of the host, or "
                      "run from the console")
            return
        v6 = ip.version == 6
        if hb.gateway_for(ip.version) is not None or (hb.slaac if v6 else hb.dhcp):
            continue
        gws = sorted({r.gateway for r in ctx.live.host.routes if r.dev == port and
                      r.gateway and r.net.prefixlen == 0 and r.net.version == ip.version})
        key = "gateway6" if v6 else "gateway"
        hint = f"{key}: {gws[0] if gws else '<your LAN router>'}"
        if v6 and on_port[ip] in link.dynamic:
            hint = f"slaac: true (the address came by SLAAC), or {hint}"
        ctx.error(path, f"an SSH session is open to {sess}, which is on {port}, and the "
                  f"spec gives {bridge} no {'IPv6 ' if v6 else ''}gateway: the host could "
                  f"lose this session after a reboot. Add {hint} (and keep address:), or "
                  "run from the console")
        return


def _host_overlap(ctx: Ctx, where: tuple[str, str], sub: ipaddress.IPv4Network |
                  ipaddress.IPv6Network, ours: set[str]) -> None:
    """A host route, or an address on a host link, that overlaps a new network's subnet."""
    path = ("networks", *where, "address")
    for r in ctx.live.host.routes:
        if r.dev in ours or r.net.prefixlen == 0 or r.net.version != sub.version:
            continue
        if r.net.overlaps(sub):
            ctx.error(path, f"{sub} overlaps the host route {r.dst} on {r.dev}: pick a "
                      "subnet the host does not use")
            return
    for link in ctx.live.host.links.values():
        for a in link.addresses:
            net = ipaddress.ip_interface(a).network
            if link.name not in ours and net.version == sub.version and net.overlaps(sub) \
                    and not net.is_link_local:
                ctx.error(path, f"{sub} overlaps the host's address {a} on {link.name}: "
                          "pick a subnet the host does not use")
                return


def _filtering(hb: HostBridge) -> str:
    if not hb.vlan_filtering:
        return ""
    tagged = f", {', '.join(map(str, hb.vlans))} tagged on its ports" if hb.vlans else ""
    return f", VLAN filtering (pvid {hb.pvid}{tagged})"


def _lower(ctx: Ctx, br: str, path: tuple[str | int, ...]) -> list[str]:
    """The plan lines of the bridge's bond and VLAN ports; their problems as errors."""
    host, links = ctx.spec.host, dict(ctx.live.host.links)
    out: list[str] = []
    for i, port in enumerate(host.bridges[br].ports):
        if port in host.bonds or port in host.vlans:
            lines, errs = lower_diff(host, links, br, port, _port_problem)
            out += lines
            for _, msg in errs:
                ctx.error((*path, "ports", i), msg)
    for _, msg in stranded(host, links, br):
        ctx.error((*path, "ports"), msg)
    return out


def _bond_path(host: Host, nic: str) -> tuple[str | int, ...]:
    for b, bond in host.bonds.items():
        if nic in bond.ports:
            return ("host", "bonds", b, "ports", bond.ports.index(nic))
    return ("host",)


def ctx_bridge(path: tuple[str | int, ...]) -> str:
    return str(path[2]) if len(path) > 2 else "the bridge"


def _v6_link_local(cidr: str) -> bool:
    a = ipaddress.ip_interface(cidr)
    return a.version == 6 and a.is_link_local


def wireless_port(port: str) -> str:
    """Why a Wi-Fi port is refused: plan says it, and apply's host-bridge step again."""
    return (f"{port} is a wireless interface: bridging Wi-Fi does not work (the access "
            "point drops frames with the guests' MACs); use a routed (mode: route) or NAT "
            "network instead")


def _port_problem(port: str, link: HostLink | None, bridge: str) -> str | None:
    if link is None:
        return f"{port} does not exist on the host: name an existing NIC"
    if link.wireless:
        return wireless_port(port)
    if link.master not in (None, bridge):
        return (f"{port} is already a port of {link.master}: take it out first, or use "
                f"{link.master} as the bridge")
    return None


def host_needed(spec: Spec, live: LiveState) -> bool:
    """Does plan look at the host's links, routes and sockets? For host bridges, port
    forwards (kvmnet.plan.forward_ports), and the networks libvirt does not have yet
    (their bridges and subnets must not collide with the host's, check_host); not when
    every network exists (a no-op)."""
    return bool(spec.host.bridges) or spec.has_forwards() or any(
        name not in live.networks for name, net in spec.networks.items()
        if net.mode != "overlay")


def check_live_networks(ctx: Ctx) -> None:
    """A new network's subnet or bridge must not be one a live network this spec does
    not own (another owner's, or not kvmnet's) already uses: libvirt would refuse it
    half way through apply, after what came before had been changed."""
    others = [ln for n, ln in sorted(ctx.live.networks.items())
              if n not in ctx.spec.networks and not ctx.removable(n, ln)]
    for name, net in ctx.spec.networks.items():
        if name in ctx.live.networks or net.mode == "overlay":
            continue
        for ln in others:
            whose = (f"owned by {ln.owner}" if ln.managed and ln.owner else
                     "kvmnet's, from before owners" if ln.managed else "not kvmnet's")
            # (networks of mode bridge may share a host bridge; a bridge libvirt makes, not)
            if net.bridge and net.bridge == ln.bridge and LIBVIRT_BRIDGED.count(net.mode) + \
                    LIBVIRT_BRIDGED.count(ln.network.mode):
                ctx.error(("networks", name, "bridge"), f"bridge {net.bridge} is network "
                          f"{ln.name}'s ({whose}): pick another bridge name")
            for key, ipc in (("ipv4", net.ipv4), ("ipv6", net.ipv6)):
                hit = next((c.address.network for c in ln.network.all_ips() if ipc is not None
                            and c.address.network.overlaps(ipc.address.network)), None)
                if ipc is not None and hit is not None:
                    ctx.error(("networks", name, key, "address"), f"{ipc.address.network} "
                              f"overlaps {hit} of network {ln.name} ({whose}): pick a subnet "
                              "no other network uses")


def check_host(ctx: Ctx) -> None:
    check_live_networks(ctx)
    host = ctx.live.host
    lv_bridges = {ln.bridge for ln in ctx.live.networks.values() if ln.bridge}
    if host.readable:
        ours = lv_bridges | set(ctx.spec.host.bridges)
        for name, net in ctx.spec.networks.items():
            if name in ctx.live.networks or net.mode == "overlay":  # overlay: not on this host
                continue
            if net.mode in LIBVIRT_BRIDGED and net.bridge and net.bridge in host.links \
                    and net.bridge not in lv_bridges:
                ctx.error(("networks", name, "bridge"), f"{net.bridge} already exists on the "
                          "host and is not a libvirt network's bridge: pick another name")
            if net.mode == "bridge" and net.bridge and net.bridge not in host.links \
                    and net.bridge not in ctx.spec.host.bridges:
                ctx.error(("networks", name, "bridge"), f"host bridge {net.bridge} does not "
                          "exist: create it, or add it under host.bridges")
            for key, ipc in (("ipv4", net.ipv4), ("ipv6", net.ipv6)):
                if ipc is None:
                    continue
                sub = ipc.address.network
                _host_overlap(ctx, (name, key), sub, ours)
    by_mac: dict[str, str] = {}
    for d in ctx.live.domains.values():
        for n in d.nics:
            by_mac.setdefault(n.mac, d.name)
    for (gname, i), mac in ctx.macs.items():
        owner = by_mac.get(mac)
        if owner is not None and owner != gname:
            ctx.error(("guests", gname, "interfaces", i), f"MAC {mac} is already used by "
                      f"domain {owner} on {ctx.live.uri}: pick another (kvmnet mac --spec FILE)")
