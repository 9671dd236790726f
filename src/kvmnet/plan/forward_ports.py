"""Port forwards must not take over the host (issue 17, item 6). Pure: on the live
socket table and addresses plan was given (kvmnet.backend.sockets, read at plan time).

A forward DNATs connections to its host_port on every host address (or on `listen:`)
to a guest. On a port the host itself serves, that hands the host's own service to
the guest: ssh (22), DNS (53) and DHCP (67) that libvirt's dnsmasq answers on its
bridges, libvirtd's TCP and TLS sockets (16509, 16514), and anything else the host
listens on now. So:

- `listen:` must be one of the host's own addresses (one it does not have catches no
  connection, and one on another host is a typo of the wrong spec);
- a host_port range holding one of those five ports, or a port the host listens on
  (same protocol), is refused on every address; with `listen:` it is taken only when
  the host does not serve that port on that address (a socket bound to 0.0.0.0 or ::
  serves every address of its family, unless it is bound to a device that does not
  hold it).

Against test:/// or a remote URI there is no host to look at, and nothing is checked
(plan says the forwards are not installed there).
"""

from __future__ import annotations

import ipaddress

from kvmnet.model.live import HostState, Listener
from kvmnet.model.spec import PortForward
from kvmnet.plan.core import Ctx

HOST_PORTS = {22: "ssh", 53: "DNS", 67: "DHCP", 16509: "libvirtd's TCP socket",
              16514: "libvirtd's TLS socket"}


def check_forward_ports(ctx: Ctx) -> None:
    host = ctx.live.host
    if ctx.live.is_test or ctx.live.firewall is None or not host.readable \
            or host.listening is None:
        return
    own = _own_addresses(host)
    for name, net in ctx.spec.networks.items():
        for i, f in enumerate(net.forwards):
            path = ("networks", name, "forwards", i)
            listen = str(f.listen) if f.listen is not None else None
            if listen is not None and listen not in own:
                ctx.error((*path, "listen"), f"{listen} is not an address of this host "
                          f"(it has {_some(own)}): name one of its own addresses, or leave "
                          "listen: out")
                continue
            problem = port_problem(f, listen, host, own)
            if problem:
                ctx.error((*path, "host_port"), problem)


def _own_addresses(host: HostState) -> dict[str, str]:
    """address -> the link that holds it."""
    return {str(ipaddress.ip_interface(a).ip): ln.name
            for ln in host.links.values() for a in ln.addresses}


def _some(own: dict[str, str]) -> str:
    names = sorted(own, key=lambda a: (ipaddress.ip_address(a).version, a))
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") if names else "none"


def _serves(s: Listener, addr: str, own: dict[str, str]) -> bool:
    return s.serves(addr) and (s.dev is None or own.get(addr) == s.dev
                               or ipaddress.ip_address(s.addr) == ipaddress.ip_address(addr))


def port_problem(f: PortForward, listen: str | None, host: HostState,
                 own: dict[str, str]) -> str | None:
    """Why forward f would take a port the host serves; None when it would not."""
    first, last = f.host_port
    listening = host.listening or ()
    if listen is None:
        for port in sorted(p for p in HOST_PORTS if first <= p <= last)[:1]:
            return (f"host_port {port} is {HOST_PORTS[port]}'s port, and without "
                    "listen: the forward takes it on every host address (the host "
                    "would lose it to the guest): pick another host_port (e.g. "
                    f"{_free(port, f.proto, listening)}), or set listen: to one of the "
                    f"host's addresses that does not serve {port}")
        for s in listening:
            if s.proto == f.proto and first <= s.port <= last:
                return (f"the host listens on {_where(s)} {f.proto}/{s.port}, and without "
                        f"listen: the forward takes port {s.port} on every host address: "
                        f"pick another host_port (e.g. {_free(s.port, f.proto, listening)}), "
                        "or set listen: to one of the host's addresses that does not "
                        f"serve {s.port}")
        return None
    for s in listening:
        if s.proto == f.proto and first <= s.port <= last and _serves(s, listen, own):
            return (f"the host serves {f.proto}/{s.port} on {listen} (a socket on "
                    f"{_where(s)}): the "
                    "forward would take it from the host; pick another host_port (e.g. "
                    f"{_free(s.port, f.proto, listening)}) or another listen: address")
    return None


def _where(s: Listener) -> str:
    addr = f"[{s.addr}]" if ":" in s.addr else s.addr
    return f"{addr}" + (f"%{s.dev}" if s.dev else "")


def _free(port: int, proto: str, listening: tuple[Listener, ...]) -> int:
    """A port near port+2000 that is neither the host's nor listened on."""
    taken = {s.port for s in listening if s.proto == proto} | set(HOST_PORTS)
    n = 2000 + port if port < 63000 else 10000
    while n in taken:
        n += 1
    return n
