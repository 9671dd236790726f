"""Checks of port forwards: host ports, protocols, families and the guest each reaches."""

from __future__ import annotations

from kvmnet.errors import close_matches
from kvmnet.model.spec import PortForward, Spec
from kvmnet.spec.checks.network import overlapping
from kvmnet.spec.findings import Findings
from kvmnet.spec.positions import Path_


def forwards(f: Findings, spec: Spec) -> None:
    for name, net in spec.networks.items():
        used: list[tuple[str, object, object, int]] = []
        for i, fw in enumerate(net.forwards):
            path: Path_ = ("networks", name, "forwards", i)
            if (fw.guest is None) == (fw.address is None):
                f.error(path, "a forward needs exactly one of guest: NAME or address: IP")
            if fw.guest is not None:
                _forward_guest(f, spec, name, path, fw.guest)
            if fw.address is not None and not any(fw.address in c.address.network
                                                  for c in net.all_ips()):
                f.error(path + ("address",), f"{fw.address} is not in network {name}'s "
                        "subnet", refs=[("networks", name, k)
                                        for k in ("ipv4", "ipv6", "more_ips")])
            if fw.guest_port and fw.guest_port.size != fw.host_port.size:
                f.error(path + ("guest_port",), _port_lengths(fw))
            _forward_families(f, path, fw, _guest_families(spec, name, fw))
            for proto, hp, listen, j in used:
                if proto == fw.proto and hp.overlaps(fw.host_port) and (  # type: ignore[attr-defined]
                        listen is None or fw.listen is None or listen == fw.listen):
                    f.error(path + ("host_port",), f"{fw.proto} port {fw.host_port} is "
                            f"already forwarded by entry {j + 1} ({hp}): each host port once")
                    break
            used.append((fw.proto, fw.host_port, fw.listen, i))
    all_fw = [(n, i, fw) for n, net in spec.networks.items() for i, fw in enumerate(net.forwards)]
    protos = {p: n << 17 for n, p in enumerate(sorted({fw.proto for _, _, fw in all_fw}))}
    spans = [(protos[fw.proto] + fw.host_port.first, protos[fw.proto] + fw.host_port.last, k)
             for k, (_, _, fw) in enumerate(all_fw)]
    for k, j in overlapping(spans):
        (n1, i1, a), (n2, _i2, b) = all_fw[k], all_fw[j]
        if n1 != n2 and (a.listen is None or b.listen is None or a.listen == b.listen):
            f.error(("networks", n1, "forwards", i1, "host_port"), f"{a.proto} port "
                    f"{a.host_port} is already forwarded by network {n2}",
                    refs=[("networks", n2, "forwards")])


def _port_lengths(fw: PortForward) -> str:
    """Why a host_port and a guest_port of different lengths are refused, and what to
    write instead. A range reaches a range as long, port by port; many host ports to
    one guest port was only a warning once, and is refused since issue 19: it is
    rarely meant, and one host port says it plainly."""
    h, g = fw.host_port, fw.guest_port or fw.host_port

    def span(first: int, size: int) -> str:
        return str(first) if size == 1 else f"{first}-{first + size - 1}"

    ways = []
    if g.first + h.size - 1 <= 65535:
        ways.append(f"guest_port: {span(g.first, h.size)} (each host port to its own)")
    if h.first + g.size - 1 <= 65535:
        ways.append(f"host_port: {span(h.first, g.size)}")
    def ports(n: int) -> str:
        return "one port" if n == 1 else f"{n} ports"

    return (f"host_port {h} is {ports(h.size)} but guest_port {g} is {ports(g.size)}: "
            "host ports reach guest ports one to one (a range to a range as long). Write "
            + " or ".join(ways))


def _guest_families(spec: Spec, netname: str, fw: PortForward) -> set[int]:
    """The families the forward's target has: address:'s, or those of the guest's
    reservations (ipv4:, ipv6:) on the network."""
    if fw.address is not None:
        return {fw.address.version}
    g = spec.guests.get(fw.guest or "")
    return {v for nic in (g.interfaces if g else ()) if nic.network == netname
            for v, a in ((4, nic.ipv4), (6, nic.ipv6)) if a is not None}


def _forward_families(f: Findings, path: Path_, fw: PortForward, have: set[int]) -> None:
    """listen and sources in a family the target has (a guest: its ipv4 and/or ipv6 on
    the network); never across families (IPv6 to IPv4 is NAT64, not a port forward);
    no loopback listen: a packet from 127.0.0.1 may not leave the host."""
    if not have:
        return   # (no address known: _forward_guest says so)
    guest = [path + ("address",), path + ("guest",)]   # (what says the family)
    what = (f"the guest address is IPv{next(iter(have))}" if fw.address is not None
            else f"{fw.guest} has only an ipv{next(iter(have))} on this network")
    fix = ("forward within one address family" if fw.address is not None else
           f"give {fw.guest}'s NIC an ipv{6 if 4 in have else 4}: (a reservation), or "
           "forward within its family")
    if fw.listen is not None and fw.listen.is_loopback:
        f.error(path + ("listen",), f"{fw.listen} is a loopback address, which the host "
                "cannot forward to a guest: listen on one of the host's other addresses, "
                "or leave listen out (every address of the host)")
    elif fw.listen is not None and fw.listen.version not in have:
        f.error(path + ("listen",), f"listen {fw.listen} is IPv{fw.listen.version} but "
                f"{what}: {fix}", refs=guest)
    for k, src in enumerate(fw.sources):
        if src.version not in have:
            f.error(path + ("sources", k), f"source {src} is IPv{src.version} but {what}: "
                    f"{fix}", refs=guest)
        elif fw.listen is not None and src.version != fw.listen.version:
            f.error(path + ("sources", k), f"source {src} is IPv{src.version} but listen "
                    f"{fw.listen} is IPv{fw.listen.version}: no connection from it can "
                    "arrive there; remove one of the two", refs=[path + ("listen",)])


def _forward_guest(f: Findings, spec: Spec, netname: str, path: Path_, guest: str) -> None:
    g = spec.guests.get(guest)
    if g is None:
        close = close_matches(guest, list(spec.guests), n=1)
        f.error(path + ("guest",), f"unknown guest {guest!r}" + (
            f": did you mean {close[0]!r}?" if close else ": define it under guests:"),
            refs=[("guests", guest)])
        return
    if not any(nic.network == netname and (nic.ipv4 or nic.ipv6) for nic in g.interfaces):
        f.error(path + ("guest",), f"kvmnet does not know {guest}'s address on {netname}: "
                f"give the guest's NIC on {netname} an ipv4: or ipv6: (a DHCP reservation; "
                "the forward reaches each one it has), or forward to address: IP",
                refs=[("guests", guest, "interfaces")])


# -- overlay networks (OVN; OVN) ---------------------------------------
