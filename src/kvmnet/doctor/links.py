"""kvmnet doctor's checks of links, routes and guests' MACs (pure, like doctor_checks)."""

from __future__ import annotations

import ipaddress

from kvmnet.doctor.checks import Check, Facts, Net, networks, sh
from kvmnet.model.derive import stable_mac
from kvmnet.model.live import HostLink, HostState
from kvmnet.model.types import IPNet

_SKIP_HOST = "the host's links were not read"


def _host_skip(cid: str, title: str, f: Facts) -> Check | None:
    if f.host is None:
        return Check(cid, "skip", title, f.host_error or _SKIP_HOST)
    return None


def _ports(host: HostState, bridge: str) -> list[HostLink]:
    return sorted((ln for ln in host.links.values() if ln.master == bridge),
                  key=lambda ln: ln.name)


def check_wireless(f: Facts) -> Check:
    title = "no Wi-Fi NIC in a bridge or bond"
    bad: list[tuple[str, str, str]] = []      # (bridge, port, where)
    if f.spec is not None:
        for br, hb in f.spec.host.bridges.items():
            bad += [(br, p, "spec") for p in hb.ports if p in f.wireless]
        for bond, b in f.spec.host.bonds.items():  # a bond of Wi-Fi is bridged Wi-Fi too
            bad += [(bond, p, "bond") for p in b.ports if p in f.wireless]
    if f.host is not None:
        for ln in f.host.links.values():
            if ln.kind in ("bridge", "bond"):
                bad += [(ln.name, p.name, "host") for p in _ports(f.host, ln.name)
                        if p.name in f.wireless and (ln.name, p.name, "spec") not in bad
                        and (ln.name, p.name, "bond") not in bad]
    if not bad:
        return Check("wireless", "ok", title, "no bridge has (or is to get) a wireless port.")
    fixes = [f.cmd(f"ip link set dev {p} nomaster") if where == "host" else
             f"# remove {p} from host.{where if where == 'bond' else 'bridge'}s.{br}.ports "
             f"in {f.spec_file}" for br, p, where in bad]
    fixes.append("# give the guests a NAT or routed network instead (mode: nat / mode: route)")
    pairs = ", ".join(f"{p} in {br}" for br, p, _ in bad)
    return Check("wireless", "fail", title,
                 f"{pairs}: a Wi-Fi access point only passes frames from the MAC that "
                 "associated, so guests behind a bridged Wi-Fi NIC get no traffic.",
                 "\n".join(fixes))


def _subnets(n: Net) -> list[IPNet]:
    return [c.address.network for c in n.network.all_ips()]


def check_route_collision(f: Facts) -> Check:
    title = "subnets free of host routes"
    skip = _host_skip("route_collision", title, f)
    if skip:
        return skip
    assert f.host is not None
    hits: list[str] = []
    fixes: list[str] = []
    taken = [r.net for r in f.host.routes if r.net.prefixlen > 0]
    nets = networks(f)
    taken += [s for n in nets for s in _subnets(n)]
    for n in nets:
        for sub in _subnets(n):
            for r in f.host.routes:
                if r.net.prefixlen == 0 or r.net.version != sub.version:
                    continue
                if r.dev is not None and r.dev == n.bridge:
                    continue  # the network's own route, through its own bridge
                if sub.overlaps(r.net):
                    via = f" via {r.gateway}" if r.gateway else ""
                    hits.append(f"{n.name} ({sub}) overlaps the host route {r.dst}{via} "
                                f"dev {r.dev or '?'}")
                    fixes.append(_free_fix(f, n, sub, taken))
                    break
    if not hits:
        return Check("route_collision", "ok", title,
                     "no network's subnet overlaps a route of the host.")
    return Check("route_collision", "fail", title,
                 "; ".join(hits) + ": libvirt refuses to start such a network ('Network is "
                 "already in use'), or traffic for it leaves the wrong way.",
                 "\n".join(dict.fromkeys(fixes)))


def _free_fix(f: Facts, n: Net, sub: IPNet, taken: list[IPNet]) -> str:
    free = _free_subnet(sub, taken)
    if free is None:
        return f"# pick a subnet no host route covers for {n.name}"
    key = "ipv4" if sub.version == 4 else "ipv6"
    addr = f"{next(free.hosts())}/{free.prefixlen}"
    if n.origin == "spec":
        return f"# in {f.spec_file}: networks.{n.name}.{key}.address: {addr}"
    return (f"virsh net-edit {sh(n.name)}   # <ip address='{next(free.hosts())}' "
            f"prefix='{free.prefixlen}'>, then: virsh net-destroy {sh(n.name)} && "
            f"virsh net-start {sh(n.name)}")


def _free_subnet(sub: IPNet, taken: list[IPNet]) -> IPNet | None:
    """The first /24 (/64) in 192.168.100-254 (fd00:kvm::) nothing overlaps."""
    if sub.version == 4:
        cands: list[IPNet] = [ipaddress.ip_network(f"192.168.{i}.0/24") for i in range(100, 255)]
    else:
        cands = [ipaddress.ip_network(f"fd00:6b76:6d:{i:x}::/64") for i in range(1, 256)]
    for c in cands:
        if not any(c.version == t.version and c.overlaps(t) for t in taken):
            return c
    return None


def check_mtu(f: Facts) -> Check:
    title = "bridge and port MTUs match"
    skip = _host_skip("mtu", title, f)
    if skip:
        return skip
    assert f.host is not None
    bad: list[tuple[HostLink, HostLink]] = []
    for br in sorted(f.host.links.values(), key=lambda ln: ln.name):
        if br.kind != "bridge" or br.mtu is None:
            continue
        bad += [(br, p) for p in _ports(f.host, br.name) if p.mtu is not None and p.mtu != br.mtu]
    if not bad:
        return Check("mtu", "ok", title, "every bridge port has its bridge's MTU.")
    text = "; ".join(f"{br.name} has MTU {br.mtu}, its port {p.name} {p.mtu}" for br, p in bad)
    return Check("mtu", "warn", title,
                 text + ": frames bigger than the smaller MTU are dropped without an error "
                 "(large transfers stall while pings work).",
                 "\n".join(f.cmd(f"ip link set dev {sh(p.name)} mtu {br.mtu}") for br, p in bad))


def check_bridges(f: Facts) -> Check:
    title = "networks' bridges exist and are up"
    skip = _host_skip("bridges", title, f)
    if skip:
        return skip
    assert f.host is not None
    fails, warns, fixes = [], [], []
    spec_bridges = set(f.spec.host.bridges) if f.spec else set()
    for n in networks(f):
        if n.network.mode in ("macvtap", "overlay") or not n.bridge:
            continue
        libvirt_made = n.network.mode != "bridge"
        if libvirt_made and not n.active:
            continue  # libvirt makes the bridge when it starts the network
        link = f.host.links.get(n.bridge)
        if link is None:
            if libvirt_made:
                fails.append(f"{n.name}: its bridge {n.bridge} is missing")
                fixes.append(f"virsh net-destroy {sh(n.name)} && virsh net-start "
                             f"{sh(n.name)}")
            elif n.bridge in spec_bridges:
                warns.append(f"{n.name}: host bridge {n.bridge} is not there yet")
                fixes.append(f"{f.apply_cmd()}   # creates host.bridges.{n.bridge}")
            elif n.origin == "spec":
                fails.append(f"{n.name}: host bridge {n.bridge} is missing")
                fixes.append(f"# add host.bridges.{n.bridge} (ports: [YOUR-NIC]) to "
                             f"{f.spec_file}, then: {f.apply_cmd()}")
            else:
                fails.append(f"{n.name}: host bridge {n.bridge} is missing")
                fixes.append(f.cmd(f"ip link add name {sh(n.bridge)} type bridge") + "\n"
                             + f.cmd(f"ip link set dev {sh(n.bridge)} up") + "\n"
                             f"# then move the LAN NIC into it (kvmnet: host.bridges."
                             f"{n.bridge} in a spec, kvmnet apply)")
        elif not link.up:
            fails.append(f"{n.name}: its bridge {n.bridge} is down")
            fixes.append(f.cmd(f"ip link set dev {sh(n.bridge)} up"))
    if fails:
        return Check("bridges", "fail", title,
                     "; ".join(fails + warns) + ": guests attached there have no network.",
                     "\n".join(fixes))
    if warns:
        return Check("bridges", "warn", title, "; ".join(warns) + ".", "\n".join(fixes))
    return Check("bridges", "ok", title, "every network's bridge is there and up.")


def check_macs(f: Facts) -> Check:
    title = "no MAC used by two guests"
    if f.live is None:
        return Check("duplicate_macs", "skip", title, "libvirt is not reachable.")
    users: dict[str, list[tuple[str, int, str, str | None]]] = {}
    for d in sorted(f.live.domains.values(), key=lambda d: d.name):
        for i, nic in enumerate(d.nics):
            users.setdefault(nic.mac.lower(), []).append((d.name, i, nic.type, nic.source))
    if f.spec is not None:
        for gname, g in f.spec.guests.items():
            for i, gn in enumerate(g.interfaces):
                if gn.mac and gn.mac in users and all(u[0] != gname for u in users[gn.mac]):
                    users[gn.mac].append((gname, i, "spec", gn.network or gn.bridge))
    dups = {m: u for m, u in users.items() if len({x[0] for x in u}) > 1}
    if not dups:
        return Check("duplicate_macs", "ok", title, "every guest NIC has its own MAC.")
    text, fixes = [], []
    taken = set(users)
    for mac, u in sorted(dups.items()):
        text.append(f"{mac} on {', '.join(x[0] for x in u)}")
        for dom, idx, typ, src in u[1:]:
            new, salt = stable_mac(dom, idx), 0
            while new in taken:
                salt += 1
                new = stable_mac(dom, idx, salt)
            taken.add(new)
            if typ == "spec":
                fixes.append(f"# in {f.spec_file}: guests.{dom}.interfaces[{idx}].mac: "
                             f"\"{new}\"")
            else:
                fixes.append(f"virsh detach-interface {dom} {typ} --mac {mac} --config && "
                             f"virsh attach-interface {dom} {typ} {src} --mac {new} --config")
    return Check("duplicate_macs", "fail", title,
                 "; ".join(text) + ": two NICs with one MAC on a LAN steal each other's "
                 "traffic and DHCP leases.", "\n".join(fixes))


def check_accept_ra(f: Facts) -> Check:
    """A link that takes its own IPv6 address from router advertisements (SLAAC) while
    the host forwards IPv6 needs accept_ra=2: with 1 the kernel ignores advertisements
    on a forwarding host, and the address and default route lapse when their lifetimes
    run out. Links whose RAs a network daemon takes (accept_ra 0: networkd, NM) are
    fine; so are links with no SLAAC address, unless the spec wants SLAAC on them."""
    title = "IPv6 router advertisements while forwarding (accept_ra)"
    skip = _host_skip("accept_ra", title, f)
    if skip:
        return skip
    assert f.host is not None
    wanted = {br for br, hb in f.spec.host.bridges.items() if hb.slaac} if f.spec else set()
    bad: list[tuple[str, str]] = []
    for ln in sorted(f.host.links.values(), key=lambda x: x.name):
        slaac = [a for a in ln.dynamic if not ipaddress.ip_interface(a).is_link_local
                 and ipaddress.ip_interface(a).version == 6]
        if ln.accept_ra == 1 and ln.forwarding6 and slaac:
            bad.append((ln.name, f"{ln.name} has {', '.join(slaac)} by SLAAC, but forwards "
                        "IPv6 with accept_ra=1, so the kernel ignores the router's "
                        "advertisements: the address and the default route lapse"))
        elif ln.name in wanted and (ln.accept_ra == 0 or (ln.accept_ra == 1
                                                          and ln.forwarding6)):
            bad.append((ln.name, f"{ln.name} has slaac: true in {f.spec_file}, but "
                        f"accept_ra={ln.accept_ra}"
                        f"{' while it forwards IPv6' if ln.accept_ra else ''}: it takes no "
                        "router advertisements"))
    if not bad:
        return Check("accept_ra", "ok", title, "no link that takes its IPv6 address by "
                     "SLAAC ignores router advertisements.")
    fix = [f.cmd(f"sysctl -w net.ipv6.conf.{sh(n)}.accept_ra=2") for n, _ in bad]
    fix += [f"echo 'net.ipv6.conf.{n}.accept_ra = 2' >> /etc/sysctl.d/60-kvmnet-accept-ra.conf"
            "   # persist" for n, _ in bad if sh(n) == n]
    return Check("accept_ra", "warn", title, "; ".join(w for _, w in bad) + ".",
                 "\n".join(fix))
