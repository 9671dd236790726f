"""Generated specs: the apply job (NAT networks with DHCP and reservations) and the
scale job (N networks with 10 guest NICs each).

Names, bridges and subnets are the bench's own (kvb-*, kvb*, 10.250.0.0/16 on the
lab), so a run never touches what tests or users made.
"""

from __future__ import annotations

PREFIX = "kvb-"
SCOPE = "kvb-*"
RESERVATIONS = 5


def net_name(i: int) -> str:
    return f"{PREFIX}{i:03d}"


def reservation(i: int, j: int, moved: bool = False) -> dict[str, str]:
    """Reservation j of network i; `moved` gives the one-reservation change its new IP."""
    last = 20 + j if moved else 10 + j
    return {"mac": f"52:54:00:fa:{i:02x}:{j:02x}", "ip": f"10.250.{i}.{last}", "name": f"h{j}"}


def apply_spec(n: int, change: bool = False) -> str:
    """n NAT networks kvb-000.. on bridges kvb000.., 10.250.i.0/24, a DHCP range and
    RESERVATIONS reservations each; `change` moves reservation 0 of network 0."""
    if n > 250:
        raise ValueError("the apply job has room for 250 networks in 10.250.0.0/16")
    # one owner for both files: the change is the same spec, edited
    lines = ["# kvmnet bench: apply job", "owner: kvmnet-bench", "networks:"]
    for i in range(n):
        lines += [f"  {net_name(i)}:", "    mode: nat", f"    bridge: kvb{i:03d}",
                  "    ipv4:", f"      address: 10.250.{i}.1/24",
                  f"      dhcp: 10.250.{i}.100-10.250.{i}.199", "      hosts:"]
        for j in range(RESERVATIONS):
            h = reservation(i, j, moved=change and i == 0 and j == 0)
            lines.append(f"        - {{mac: \"{h['mac']}\", ip: {h['ip']}, name: {h['name']}}}")
    return "\n".join(lines) + "\n"


def host_xml(h: dict[str, str]) -> str:
    return f"<host mac='{h['mac']}' name='{h['name']}' ip='{h['ip']}'/>"


def _subnet(i: int) -> str:
    return f"10.{i // 256}.{i % 256}"


def scale_spec(n: int, nics_per_network: int = 10) -> str:
    """n NAT networks, each with a DHCP range, 2 reservations and a port forward, and
    guests with 2 NICs each so that every network has `nics_per_network` NICs: half of
    the NICs reserve an address, one in ten has a hand-written MAC."""
    if n > 5000:
        raise ValueError("the scale job has room for 5000 networks in 10.0.0.0/8")
    per_net = nics_per_network // 2           # guests whose first NIC is on network i
    lines = ["# kvmnet bench: scale job", "networks:"]
    for i in range(n):
        s = _subnet(i)
        lines += [f"  sn{i:04d}:", "    mode: nat", f"    bridge: sb{i:04d}", "    ipv4:",
                  f"      address: {s}.1/24", f"      dhcp: {s}.100-{s}.199", "      hosts:",
                  f"        - {{mac: \"52:54:01:{i >> 8:02x}:{i & 255:02x}:01\", ip: {s}.2}}",
                  f"        - {{mac: \"52:54:01:{i >> 8:02x}:{i & 255:02x}:02\", ip: {s}.3}}",
                  "    forwards:",
                  f"      - {{proto: tcp, host_port: {10000 + i}, guest: g{i * per_net:05d}, "
                  "guest_port: 22}"]
    lines.append("guests:")
    for g in range(n * per_net):
        i = g // per_net
        other = (i + 1) % n
        s = _subnet(i)
        lines += [f"  g{g:05d}:", "    interfaces:",
                  f"      - {{network: sn{i:04d}, ipv4: {s}.{10 + g % per_net}}}"]
        if g % per_net == 0:
            lines.append(f"      - {{network: sn{other:04d}, mac: \"52:54:02:{g >> 16:02x}:"
                         f"{(g >> 8) & 255:02x}:{g & 255:02x}\"}}")
        else:
            lines.append(f"      - {{network: sn{other:04d}}}")
    return "\n".join(lines) + "\n"


SMALL = """\
# kvmnet bench: start-up job (the size of a real host's file)
networks:
  default:
    mode: nat
    bridge: virbr0
    ipv4: {address: 192.168.122.1/24, dhcp: 192.168.122.2-192.168.122.254}
    forwards:
      - {proto: tcp, host_port: 2222, guest: web1, guest_port: 22}
  routed:
    mode: route
    bridge: br1
    ipv4: {address: 203.0.113.89/29, dhcp: 203.0.113.90-203.0.113.94}
guests:
  web1:
    interfaces:
      - {network: default, ipv4: 192.168.122.10}
      - {network: routed}
"""
