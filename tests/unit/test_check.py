"""check(): the pure semantic rules, table-driven on small specs.

Each row is a spec (YAML, loaded with positions) and the exact findings it must
give: (severity, LINE:COL or None, a substring of the message). A valid spec
gives none; seed-as-written gives exactly its two documented errors.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from kvmnet.errors import Problem
from kvmnet.model.spec import Guest, GuestNic, IPConfig, Network, Spec
from kvmnet.spec.check import check, check_file, errors
from kvmnet.spec.load import load, load_text

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"
SEED_AS_WRITTEN = ROOT / "examples" / "seed-as-written.yaml"

E, W = "error", "warning"
Want = tuple[str, str | None, str]


def findings(text: str) -> list[Problem]:
    spec, pos = load_text(text, "t.yaml")
    return check(spec, pos, "t.yaml")


def assert_findings(text: str, want: list[Want]) -> None:
    got = findings(text)
    left = list(got)
    for severity, where, sub in want:
        hits = [p for p in left if p.severity == severity and sub in p.message
                and (where is None or f"{p.line}:{p.col}" == where)]
        assert hits, f"missing {severity} {where} {sub!r}; got:\n  " + "\n  ".join(map(str, got))
        left.remove(hits[0])
    assert not left, "unexpected findings:\n  " + "\n  ".join(map(str, left))


# ------------------------------------------------------------------ the seed

def test_seed_is_clean() -> None:
    spec, pos = load(SEED)
    assert check(spec, pos, str(SEED)) == []


def test_seed_as_written_has_exactly_its_two_errors() -> None:
    spec, pos = load(SEED_AS_WRITTEN)
    problems = check(spec, pos, "seed-as-written.yaml")
    assert [(p.line, p.col, p.severity) for p in problems] == [(25, 21, E), (33, 18, E)]
    host, nic = problems
    assert host.message == (
        "networks.mynet1.ipv4.address: 203.0.113.88 is the network address of "
        "203.0.113.88/29; the host needs a usable address: write 203.0.113.89/29")
    assert nic.message.startswith(
        "guests.web1.interfaces.1.bridge: virbr0 is the bridge of libvirt network default "
        "(mode nat), not a host bridge: for the LAN write network: lan, or bridge: br0")
    assert str(host).startswith("seed-as-written.yaml:25:21: error: ")


def test_the_suggested_fixes_make_seed_as_written_valid() -> None:
    """Doing what the two messages say gives a spec without problems."""
    text = SEED_AS_WRITTEN.read_text()
    text = text.replace("address: 203.0.113.88/29", "address: 203.0.113.89/29")
    text = text.replace("{bridge: virbr0, mac:", "{network: lan, mac:")
    assert findings(text) == []


# ------------------------------------------------------------------ the table

BASE_LAN = """\
host:
  bridges:
    br0: {ports: [enp2s0], address: 192.168.1.1/24, gateway: 192.168.1.254}
"""

CASES: list[tuple[str, str, list[Want]]] = [
    ("valid-nat", """\
networks:
  default:
    ipv4: {address: 192.168.122.1/24, dhcp: 192.168.122.2-192.168.122.254}
""", []),
    ("valid-every-mode", BASE_LAN + """\
networks:
  n: {mode: nat, ipv4: {address: 10.0.0.1/24}, ipv6: {address: fd00:1::1/64}}
  r: {mode: route, ipv4: {address: 10.0.1.1/24}}
  o: {mode: open, ipv4: {address: 10.0.2.1/24}}
  i: {mode: isolated, ipv4: {address: 10.0.3.1/24}}
  lan: {mode: bridge, bridge: br0}
  direct: {mode: macvtap, devices: [enp3s0], macvtap_mode: bridge}
guests:
  g:
    interfaces:
      - {network: n, ipv4: 10.0.0.10}
      - {network: lan}
      - {bridge: br0}
      - {network: direct}
""", [(W, "5:54", "IPv6 on NAT network")]),
    # --- addresses
    ("overlap", """\
networks:
  a: {ipv4: {address: 10.0.0.1/16}}
  b: {ipv4: {address: 10.0.5.1/24}}
""", [(E, "3:23", "10.0.5.0/24 overlaps 10.0.0.0/16 of network a")]),
    ("same-subnet-other-family-is-fine", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24}, ipv6: {address: fd00::1/64}}
  b: {ipv4: {address: 10.1.0.1/24}, ipv6: {address: fd01::1/64}}
""", [(W, "2:43", "IPv6 on NAT network"), (W, "3:43", "IPv6 on NAT network")]),
    ("host-network-address", """\
networks:
  r: {mode: route, ipv4: {address: 203.0.113.88/29}}
""", [(E, "2:36", "write 203.0.113.89/29")]),
    ("host-network-address-skips-dhcp", """\
networks:
  r: {mode: route, ipv4: {address: 203.0.113.88/29, dhcp: 203.0.113.89-203.0.113.92}}
""", [(E, "2:36", "write 203.0.113.93/29")]),
    ("host-broadcast", """\
networks:
  r: {mode: route, ipv4: {address: 10.0.0.255/24}}
""", [(E, None, "10.0.0.255 is the broadcast address of 10.0.0.0/24")]),
    ("slash-31-has-no-network-address", """\
networks:
  p2p: {mode: route, ipv4: {address: 10.0.0.0/31}}
""", []),
    ("ipv6-has-no-broadcast", """\
networks:
  v6: {mode: route, ipv6: {address: "2001:db8::ffff:ffff:ffff:ffff/64"}}
""", []),
    # --- IPv6 addressing (issue 23): SLAAC, DHCPv6, both; ULA or global; NAT66
    ("ipv6-slaac-and-dhcpv6", """\
networks:
  n:
    mode: nat
    nat: {ipv6: true}
    ipv6: {address: "fd00:1::1/64", dhcp: "fd00:1::100-fd00:1::1ff", slaac: true}
""", []),
    ("ipv6-slaac-on-ipv4", """\
networks:
  n: {ipv4: {address: 10.0.0.1/24, slaac: true}}
""", [(E, "2:36", "slaac is for IPv6 blocks")]),
    ("ipv6-slaac-false-without-dhcpv6", """\
networks:
  n: {mode: route, ipv6: {address: "2001:db8::1/64", slaac: false}}
""", [(E, "2:61", "slaac: false, and the block has no DHCPv6 either")]),
    ("ipv6-slaac-false-with-a-guests-reservation", """\
networks:
  n: {mode: route, ipv6: {address: "2001:db8::1/64", slaac: false}}
guests:
  g: {interfaces: [{network: n, ipv6: "2001:db8::10"}]}
""", []),
    ("ipv6-slaac-needs-a-64", """\
networks:
  n: {mode: route, ipv6: {address: "2001:db8::1/80", dhcp: "2001:db8::10-2001:db8::20",
                          slaac: true}}
""", [(E, "3:34", "write address: 2001:db8::1/64, or remove slaac: true")]),
    ("ipv6-no-dhcpv6-and-no-64", """\
networks:
  n: {mode: route, ipv6: {address: "2001:db8::1/112"}}
""", [(W, "2:36", "guests make no SLAAC address in it (SLAAC needs a /64)")]),
    ("ipv6-ula-routed", """\
networks:
  n: {mode: route, ipv6: {address: "fd00:1::1/64"}}
""", [(W, "2:36", "is a unique local (ULA) prefix")]),
    ("ipv6-global-masqueraded", """\
networks:
  n: {mode: nat, nat: {ipv6: true}, ipv6: {address: "2a01:4f8::1/64"}}
""", [(W, "2:53", "is a global prefix, masqueraded")]),
    ("ipv6-nat66-without-ipv6", """\
networks:
  n: {mode: nat, nat: {ipv6: true}, ipv4: {address: 10.0.0.1/24}}
""", [(E, "2:30", "but it has no IPv6 block")]),
    ("ipv6-range-over-the-anycast-address", """\
networks:
  n: {mode: route, ipv6: {address: "2001:db8::ff/64", dhcp: "2001:db8::-2001:db8::f"}}
""", [(E, "2:61", "the subnet-router anycast address")]),
    ("ipv6-dhcpv6-on-two-blocks", """\
networks:
  n:
    mode: route
    ipv6: {address: "2001:db8::1/64", dhcp: "2001:db8::10-2001:db8::20"}
    more_ips:
      - {address: "2001:db8:1::1/64", dhcp: "2001:db8:1::10-2001:db8:1::20"}
""", [(E, "6:9", "libvirt serves DHCPv6 on one IPv6 block of a network only")]),
    ("ipv6-under-ipv4", """\
networks:
  a: {ipv4: {address: fd00::1/64}}
""", [(E, None, "fd00::1/64 is IPv6: put it under ipv6:")]),
    # --- DHCP ranges
    ("dhcp-outside", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, dhcp: 10.0.0.10-10.0.1.10}}
""", [(E, None, "is not inside 10.0.0.0/24: write a range within 10.0.0.1-10.0.0.254")]),
    ("dhcp-reversed", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, dhcp: 10.0.0.99-10.0.0.10}}
""", [(E, None, "is reversed: write 10.0.0.10-10.0.0.99")]),
    ("dhcp-covers-host", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, dhcp: 10.0.0.1-10.0.0.99}}
""", [(E, None, "covers the host's own address 10.0.0.1: start it after it, e.g. "
       "10.0.0.2-10.0.0.99")]),
    ("dhcp-covers-host-at-its-end", """\
networks:
  a: {ipv4: {address: 10.0.0.99/24, dhcp: 10.0.0.10-10.0.0.99}}
""", [(E, None, "end it before it, e.g. 10.0.0.10-10.0.0.98")]),
    ("dhcp-covers-last-ipv6-address", """\
networks:
  a:
    ipv6:
      address: "fd00::ffff:ffff:ffff:ffff/64"
      dhcp: "fd00::ffff:ffff:ffff:fff0-fd00::ffff:ffff:ffff:ffff"
""", [(E, "5:13", "covers the host's own address fd00::ffff:ffff:ffff:ffff: end it before"),
    (W, "4:7", "IPv6 on NAT network")]),
    ("dhcp-network-and-broadcast", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, dhcp: [10.0.0.0-10.0.0.0, 10.0.0.200-10.0.0.255]}}
""", [(E, "2:43", "includes the network or broadcast address"),
      (E, "2:62", "includes the network or broadcast address")]),
    ("dhcp-ranges-overlap", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, dhcp: [10.0.0.10-10.0.0.20, 10.0.0.15-10.0.0.30]}}
""", [(E, None, "overlaps range 1 (10.0.0.10-10.0.0.20): merge them")]),
    ("dhcp-wrong-family", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, dhcp: "fd00::2-fd00::9"}}
""", [(E, None, "range fd00::2-fd00::9 is IPv6 in an IPv4 block")]),
    # --- reservations
    ("reservation-outside", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, hosts: [{ip: 10.0.9.9, name: x}]}}
""", [(E, None, "reservation 10.0.9.9 is outside 10.0.0.0/24")]),
    ("reservation-duplicates", """\
networks:
  a:
    ipv4:
      address: 10.0.0.1/24
      hosts:
        - {ip: 10.0.0.5, mac: "52:54:00:00:00:01", name: a}
        - {ip: 10.0.0.5, mac: "52:54:00:00:00:01", name: a}
""", [(E, "7:11", "duplicate reservation address 10.0.0.5"),
      (E, "7:11", "duplicate reservation MAC 52:54:00:00:00:01"),
      (E, "7:11", "duplicate reservation name a")]),
    ("reservation-ipv6-needs-id-or-name", """\
networks:
  a: {ipv6: {address: fd00::1/64, hosts: [{ip: "fd00::5", mac: "52:54:00:00:00:01"}]}}
""", [(E, None, "an IPv6 reservation needs id: (DUID) or name:"),
    (W, "2:13", "IPv6 on NAT network")]),
    ("reservation-disagrees-with-nic", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, hosts: [{ip: 10.0.0.5, mac: "52:54:00:00:00:01"}]}}
guests:
  g: {interfaces: [{network: a, mac: "52:54:00:00:00:01", ipv4: 10.0.0.6}]}
""", [(E, None, "reserves 10.0.0.5 for: keep one of the two")]),
    # --- MACs
    ("duplicate-mac-any-case", """\
networks: {a: {}}
guests:
  g1: {interfaces: [{network: a, mac: "52:54:00:AB:CD:EF"}]}
  g2: {interfaces: [{network: a, mac: "52-54-00-ab-cd-ef"}]}
""", [(E, "4:39", "MAC 52:54:00:ab:cd:ef is also used by g1 NIC 1"),
    (E, "1:15", "needs the host's address on the network")]),
    ("multicast-mac", """\
networks: {a: {mac: "01:00:5e:00:00:01"}}
""", [(E, None, "01:00:5e:00:00:01 is a multicast MAC (the first byte is odd); a NIC needs "
       "a unicast one: e.g. 00:00:5e:00:00:01"),
    (E, "1:15", "needs the host's address on the network")]),
    ("multicast-mac-in-reservation", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24, hosts: [{ip: 10.0.0.5, mac: "ff:ff:ff:ff:ff:ff"}]}}
""", [(E, None, "ff:ff:ff:ff:ff:ff is a multicast MAC")]),
    # --- bridges
    ("bridge-shared", """\
networks:
  a: {mode: nat, bridge: virbr5}
  b: {mode: isolated, bridge: virbr5}
""", [(E, None, "networks.b.bridge: bridge virbr5 is already used by network a"),
    (E, "2:13", "needs the host's address on the network")]),
    ("two-bridge-mode-networks-may-share", BASE_LAN + """\
networks:
  lan1: {mode: bridge, bridge: br0}
  lan2: {mode: bridge, bridge: br0}
""", []),
    ("host-bridge-reused-by-nat", BASE_LAN + """\
networks:
  default: {mode: nat, bridge: virbr0}
  oops: {mode: nat, bridge: br0}
""", [(E, "6:29", "br0 is a host bridge (under host.bridges); libvirt creates the bridge "
       "of a nat network itself: use another name (e.g. virbr1)"),
    (E, "5:19", "needs the host's address on the network"),
    (E, "6:16", "needs the host's address on the network")]),
    ("bridge-network-on-unknown-host-bridge", """\
networks:
  lan: {mode: bridge, bridge: br7}
""", [(W, "2:31", "host bridge br7 is not under host.bridges: it must already exist")]),
    ("bridge-mode-needs-bridge", """\
networks:
  lan: {mode: bridge}
""", [(E, None, "mode: bridge needs bridge: NAME")]),
    ("ip-on-bridge-network", BASE_LAN + """\
networks:
  lan:
    mode: bridge
    bridge: br0
    ipv4: {address: 192.168.1.2/24}
    more_ips: [{address: 10.0.0.1/24}]
    domain: lan.example
""", [(E, "8:5", "a bridge network has no ipv4 of its own"),
      (E, "9:5", "a bridge network has no more_ips of its own"),
      (E, "10:5", "a bridge network has no domain of its own")]),
    ("macvtap-rules", """\
networks:
  d1: {mode: macvtap}
  d2: {mode: macvtap, devices: [eth0], bridge: br3}
  d3: {mode: nat, macvtap_mode: vepa, devices: [eth1]}
  d4: {mode: isolated, uplink: eth2}
""", [(E, None, "mode: macvtap needs the host NIC(s) to share"),
      (E, None, "a macvtap network has no bridge"),
      (E, None, "macvtap_mode only applies to mode: macvtap"),
      (E, None, "devices only apply to mode: macvtap; for nat write uplink: NIC"),
      (E, None, "uplink (the host NIC traffic leaves by) only applies to mode: nat or route"),
    (E, "4:14", "needs the host's address on the network")]),
    ("nat-settings-on-route", """\
networks:
  r: {mode: route, nat: {ports: 1024-65535}}
""", [(E, "2:20", "nat settings only apply to mode: nat, not route"),
    (E, "2:13", "needs the host's address on the network")]),
    ("host-bridge-ports", """\
host:
  bridges:
    br0: {ports: [eth0]}
    br1: {ports: [eth0, br0]}
""", [(E, None, "eth0 is already a port of br0"), (E, None, "br0 is itself a bridge")]),
    ("host-bridge-warnings", """\
host:
  bridges:
    br0: {address: 192.168.1.1/24, gateway: 10.0.0.1, dhcp: true}
""", [(W, None, "gateway 10.0.0.1 is not in any of br0's subnets (192.168.1.0/24)"),
      (W, None, "dhcp: true together with static address: the bridge gets both")]),
    # --- guests
    ("nic-unknown-network", """\
networks: {default: {}}
guests:
  g: {interfaces: [{network: defualt}, {network: zzz}]}
""", [(E, None, "unknown network 'defualt': did you mean 'default'?"),
      (E, None, "unknown network 'zzz': define it under networks:, or use one of default"),
    (E, "1:21", "needs the host's address on the network")]),
    ("nic-on-nat-bridge", BASE_LAN + """\
networks:
  default: {mode: nat, bridge: virbr0}
  lan: {mode: bridge, bridge: br0}
guests:
  g: {interfaces: [{bridge: virbr0}]}
""", [(E, "8:29", "virbr0 is the bridge of libvirt network default (mode nat), not a host "
       "bridge: for the LAN write network: lan, or bridge: br0; to use default write "
       "network: default"), (E, "5:19", "needs the host's address on the network")]),
    ("nic-on-nat-bridge-without-lan", """\
networks:
  default: {mode: nat, bridge: virbr0}
guests:
  g: {interfaces: [{bridge: virbr0}]}
""", [(E, None, "for the LAN write bridge: <your host bridge>; to use default write "
       "network: default"), (E, "2:19", "needs the host's address on the network")]),
    ("nic-on-unknown-bridge", """\
guests:
  g: {interfaces: [{bridge: br9}]}
""", [(W, None, "bridge br9 is not in the spec: it must already exist on the host")]),
    ("nic-addresses", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24}}
  lan: {mode: bridge, bridge: br0}
guests:
  g1: {interfaces: [{network: a, ipv4: 10.0.0.1}, {network: a, ipv4: 10.9.9.9}]}
  g2: {interfaces: [{network: a, ipv4: 10.0.0.7}, {network: lan, ipv4: 10.0.0.8}]}
  g3: {interfaces: [{network: a, ipv4: 10.0.0.7}, {network: a, ipv4: 10.0.0.0}]}
""", [(W, None, "host bridge br0 is not under host.bridges"),
      (E, None, "10.0.0.1 is the host's address on a: pick another"),
      (E, None, "10.9.9.9 is not in network a's subnet (10.0.0.0/24)"),
      (E, None, "network lan is mode bridge: libvirt runs no DHCP there"),
      (E, None, "10.0.0.7 is also given to g2 (NIC 1): each address once"),
      (E, None, "10.0.0.0 is the network or broadcast address of 10.0.0.0/24")]),
    # --- forwards
    ("forward-valid", """\
networks:
  a:
    ipv4: {address: 10.0.0.1/24}
    forwards:
      - {proto: tcp, host_port: 2222, guest: web1, guest_port: 22}
      - {proto: udp, host_port: 2222, guest: web1, guest_port: 22}
      - {proto: tcp, host_port: 8000-8009, address: 10.0.0.20, guest_port: 9000-9009}
      - {proto: tcp, host_port: 8080, address: 10.0.0.21, listen: 198.51.100.1}
      - {proto: tcp, host_port: 8080, address: 10.0.0.22, listen: 198.51.100.2}
guests:
  web1: {interfaces: [{network: a, ipv4: 10.0.0.10}]}
""", []),
    ("forward-problems", """\
networks:
  a:
    ipv4: {address: 10.0.0.1/24}
    forwards:
      - {proto: tcp, host_port: 80, guest: webl}
      - {proto: tcp, host_port: 81, guest: db}
      - {proto: tcp, host_port: 80-90, address: 10.0.0.5}
      - {proto: tcp, host_port: 100-109, address: 10.0.0.5, guest_port: 1-5}
      - {proto: tcp, host_port: 110}
      - {proto: tcp, host_port: 111, guest: web1, address: 10.0.0.5}
guests:
  web1: {interfaces: [{network: a, ipv4: 10.0.0.10}]}
  db: {interfaces: [{network: a}]}
""", [(E, "5:44", "unknown guest 'webl': did you mean 'web1'?"),
      (E, "6:44", "kvmnet does not know db's address on a"),
      (E, "7:33", "tcp port 80-90 is already forwarded by entry 1 (80): each host port once"),
      (E, None, "host_port 100-109 is 10 ports but guest_port 1-5 is 5 ports"),
      (E, "9:9", "a forward needs exactly one of guest: NAME or address: IP"),
      (E, "10:9", "a forward needs exactly one of guest: NAME or address: IP")]),
    ("forward-clash-across-networks", """\
networks:
  a: {ipv4: {address: 10.0.0.1/24}, forwards: [{proto: tcp, host_port: 443, address: 10.0.0.2}]}
  b: {ipv4: {address: 10.0.1.1/24}, forwards: [{proto: tcp, host_port: 443, address: 10.0.1.2}]}
""", [(E, None, "networks.b.forwards.0.host_port: tcp port 443 is already forwarded by "
       "network a")]),
    ("forwards-on-route", """\
networks:
  r:
    mode: route
    ipv4: {address: 10.0.0.1/24}
    forwards: [{proto: tcp, host_port: 22, address: 10.0.0.5}]
""", [(E, "5:5", "port forwards reach guests behind NAT; r is mode: route")]),
]


@pytest.mark.parametrize("text, want", [pytest.param(t, w, id=n) for n, t, w in CASES])
def test_check_table(text: str, want: list[Want]) -> None:
    assert_findings(text, want)


def test_table_covers_both_severities() -> None:
    severities = {s for _, _, want in CASES for s, _, _ in want}
    assert severities == {E, W}


# ------------------------------------------------------------------ properties

def test_errors_filters_warnings() -> None:
    problems = findings("guests:\n  g: {interfaces: [{bridge: br9}]}\n")
    assert [p.severity for p in problems] == [W]
    assert errors(problems) == []


def test_findings_are_sorted_by_position() -> None:
    problems = findings("""\
networks:
  b: {ipv4: {address: 10.0.0.0/24}}
  a: {ipv4: {address: 10.0.0.255/24}}
guests:
  g: {interfaces: [{network: nope}]}
""")
    assert problems == sorted(problems, key=Problem.sort_key)
    assert [p.line for p in problems] == [2, 3, 3, 5]


def test_check_without_positions() -> None:
    """A Spec built in Python (as read from libvirt) can be checked: positions fall back."""
    spec = Spec(
        networks={"a": Network(ipv4=IPConfig(address=ipaddress.ip_interface("10.0.0.0/24")))},
        guests={"g": Guest(interfaces=[GuestNic(network="b")])},
    )
    problems = check(spec)
    assert [(p.file, p.line, p.col, p.severity) for p in problems] == [
        ("<spec>", 1, 1, E), ("<spec>", 1, 1, E)]
    assert any("10.0.0.0 is the network address" in p.message for p in problems)
    assert any("unknown network 'b'" in p.message for p in problems)


def test_check_is_pure() -> None:
    spec, pos = load(SEED_AS_WRITTEN)
    before = spec.model_dump()
    first = check(spec, pos, "f")
    assert check(spec, pos, "f") == first
    assert spec.model_dump() == before


# ------------------------------------------------------------------ type errors + checks

def file_findings(tmp_path: Path, text: str) -> list[tuple[int, int, str, str]]:
    """check_file's findings (what validate, plan and apply report): LINE, COL,
    severity, message."""
    f = tmp_path / "t.yaml"
    f.write_text(text)
    return [(p.line, p.col, p.severity, p.message) for p in check_file(f)[2]]


def test_type_error_does_not_hide_semantic_errors(tmp_path: Path) -> None:
    """One type error and one overlapping subnet: both, each at its place."""
    got = file_findings(tmp_path, """\
networks:
  a:
    mtu: huge
    ipv4: {address: 10.0.0.1/24}
  b:
    ipv4: {address: 10.0.0.1/16}
""")
    assert got == [
        (3, 10, E, "networks.a.mtu: expected a whole number, got str 'huge'"),
        (6, 21, E, "networks.b.ipv4.address: 10.0.0.0/16 overlaps 10.0.0.0/24 of network "
                   "a: give each network its own subnet"),
    ]


def test_type_error_then_semantic_error_through_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kvmnet.cli.main import main

    f = tmp_path / "t.yaml"
    f.write_text("networks:\n  a: {mode: bridge, stp: maybe}\n  b: {mode: nt}\n")
    assert main(["validate", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:2:13: error: networks.a.mode: mode: bridge needs bridge: NAME" in err
    assert f"{f}:2:26: error: networks.a.stp: expected true or false" in err
    assert f"{f}:3:13: error: networks.b.mode: 'nt' is not allowed" in err
    assert "3 error(s); nothing was changed." in err


@pytest.mark.parametrize("text", [
    # the network a NIC names could not be read: no "unknown network"
    "networks: {lab: [mode, nat]}\nguests: {g: {interfaces: [{network: lab}]}}\n",
    # the bridge could not be read: no "mode: bridge needs bridge"
    "networks: {lan: {mode: bridge, bridge: 'br 0'}}\n",
    # the mode could not be read (so it is nat for now): no "no ipv4 in a bridge network"
    "networks: {lan: {mode: brige, bridge: br0, ipv4: {address: 10.0.0.1/24}}}\n"
    "host: {bridges: {br0: {}}}\n",
    # the MAC of a reservation could not be read: no "needs mac: or name:"
    "networks: {a: {ipv4: {address: 10.0.0.1/24, hosts: [{ip: 10.0.0.5, mac: zz}]}}}\n",
    # the address of a forward could not be read: no "needs exactly one of guest or address"
    "networks: {a: {ipv4: {address: 10.0.0.1/24},\n"
    "               forwards: [{proto: tcp, host_port: 80, address: 10.0.0.x}]}}\n",
    # the NIC's network could not be read: no "an address can only be reserved ..."
    "guests: {g: {interfaces: [{network: 'x y', bridge: br0, ipv4: 10.0.0.5}]}}\n"
    "host: {bridges: {br0: {}}}\n",
    # a forward's guest has a NIC that could not be read: no "does not know its address"
    "networks: {a: {ipv4: {address: 10.0.0.1/24},\n"
    "               forwards: [{proto: tcp, host_port: 80, guest: g}]}}\n"
    "guests: {g: {interfaces: [{network: a, ipv4: 10.0.0.5, model: bogus}]}}\n",
    # a duplicate key: the first value is used, the checks say nothing of that mapping
    "networks: {a: {mode: bridge, mode: nat}}\n",
])
def test_nothing_is_reported_of_what_was_left_out(tmp_path: Path, text: str) -> None:
    got = file_findings(tmp_path, text)
    assert len(got) == 1, got
    assert got[0][2] == E


def test_later_list_items_keep_their_places(tmp_path: Path) -> None:
    """A list item left out moves the later ones up in the model: their findings must
    not land on the wrong lines (they are left out with the list's)."""
    got = file_findings(tmp_path, """\
networks:
  a:
    ipv4:
      address: 10.0.0.1/24
      dhcp:
        - nonsense
        - 10.0.1.2-10.0.1.9
  b:
    ipv4: {address: 10.0.0.1/16}
""")
    assert [(ln, col) for ln, col, _, _ in got] == [(6, 11), (9, 21)]
    assert got[0][3].startswith("networks.a.ipv4.dhcp.0: expected a range written START-END")
    assert "overlaps 10.0.0.0/24 of network a" in got[1][3]


def test_unusable_document_still_one_error(tmp_path: Path) -> None:
    got = file_findings(tmp_path, "networks: 5\nguests: {g: {interfaces: [{network: a}]}}\n")
    assert got == [(1, 11, E, "networks: expected a mapping, got int 5")]
