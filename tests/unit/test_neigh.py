"""Guests' addresses from every source, merged (pure): DHCP leases, the guest agent and the
host's neighbour table, each address marked with where it came from. The neighbour table is
read for real in tests/integration/test_doctor_ns.py."""

from __future__ import annotations

from kvmnet.backend.neigh import (
    AgentAddr,
    Neighbour,
    addresses_by_mac,
    has_agent,
    merge_addresses,
    parse_agent,
)
from kvmnet.model.live import LiveDomain, LiveNetwork, LiveNic, LiveState
from kvmnet.model.spec import Network
from kvmnet.service.views import show_data

NAT_MAC, LAN_MAC, TAP_MAC, OTHER = ("52:54:00:00:00:01", "52:54:00:00:00:02",
                                    "52:54:00:00:00:03", "52:54:00:99:99:99")


def live() -> LiveState:
    nets = {"default": LiveNetwork("default", Network(mode="nat"), True, True, True, True),
            "lan": LiveNetwork("lan", Network(mode="bridge", bridge="br0"), True, True, True,
                               True)}
    web = LiveDomain("web1", True, (LiveNic(NAT_MAC, "network", "default"),
                                    LiveNic(LAN_MAC.upper(), "network", "lan")))
    db = LiveDomain("db1", True, (LiveNic(TAP_MAC, "direct", "enp3s0"),))
    return LiveState("qemu:///system", nets, {"web1": web, "db1": db})


def lease(mac: str, ip: str) -> dict:
    return {"network": "default", "mac": mac, "ip": ip, "prefix": 24, "hostname": "web1",
            "expiry": 1700000000, "source": "dhcp-lease"}


def test_every_source_marked() -> None:
    rows = merge_addresses(
        live(), [lease(NAT_MAC, "192.168.122.10"), lease(OTHER, "192.168.122.99")],
        neighbours=[Neighbour(LAN_MAC.upper(), "192.168.1.50", "br0", "reachable"),
                    Neighbour(NAT_MAC, "192.168.122.10", "virbr0", "stale"),
                    Neighbour(OTHER, "192.168.1.1", "br0"),               # the LAN router
                    Neighbour(LAN_MAC, "fe80::5054:ff:fe00:2", "br0")],   # link-local
        agent=[AgentAddr("db1", TAP_MAC, "10.0.0.7", 16),
               AgentAddr("db1", TAP_MAC, "127.0.0.1", 8)])
    got = {(r["mac"], r["ip"]): (r["network"], r["guest"], r["source"], r["sources"])
           for r in rows}
    assert got == {
        (NAT_MAC, "192.168.122.10"): ("default", "web1", "dhcp-lease",
                                      ["dhcp-lease", "neighbour"]),
        (OTHER, "192.168.122.99"): ("default", None, "dhcp-lease", ["dhcp-lease"]),
        (LAN_MAC, "192.168.1.50"): ("lan", "web1", "neighbour", ["neighbour"]),
        (TAP_MAC, "10.0.0.7"): ("enp3s0", "db1", "agent", ["agent"]),
    }
    agent_row = next(r for r in rows if r["source"] == "agent")
    assert agent_row["prefix"] == 16 and agent_row["expiry"] is None
    # sorted by network, then MAC, then address; `only` filters networks
    assert [r["network"] for r in rows] == ["default", "default", "enp3s0", "lan"]
    only = merge_addresses(live(), [lease(NAT_MAC, "192.168.122.10")],
                           [Neighbour(LAN_MAC, "192.168.1.50")], only=["lan"])
    assert [(r["ip"], r["source"]) for r in only] == [("192.168.1.50", "neighbour")]


def test_agent_wins_over_neighbour_and_keeps_lease_details() -> None:
    rows = merge_addresses(live(), [lease(NAT_MAC, "192.168.122.10")],
                           [Neighbour(NAT_MAC, "192.168.122.10")],
                           [AgentAddr("web1", NAT_MAC, "192.168.122.10", 24)])
    assert len(rows) == 1
    assert rows[0]["source"] == "dhcp-lease"
    assert rows[0]["sources"] == ["dhcp-lease", "agent", "neighbour"]
    assert rows[0]["expiry"] == 1700000000
    two = merge_addresses(live(), [], [Neighbour(LAN_MAC, "192.168.1.50")],
                          [AgentAddr("web1", LAN_MAC, "192.168.1.50", 24)])
    assert [(r["source"], r["sources"], r["prefix"]) for r in two] == [
        ("agent", ["agent", "neighbour"], 24)]


def test_parse_agent() -> None:
    raw = {"lo": {"hwaddr": "00:00:00:00:00:00",
                  "addrs": [{"type": 0, "addr": "127.0.0.1", "prefix": 8}]},
           "eth0": {"hwaddr": "52:54:00:AA:BB:CC",
                    "addrs": [{"type": 0, "addr": "10.1.2.3", "prefix": 24},
                              {"type": 1, "addr": "fe80::1", "prefix": 64},
                              {"type": 1, "addr": "2001:db8::5", "prefix": 64}]},
           "tun0": {"hwaddr": None, "addrs": [{"type": 0, "addr": "10.8.0.2", "prefix": 24}]}}
    assert parse_agent("g", raw) == [AgentAddr("g", "52:54:00:aa:bb:cc", "10.1.2.3", 24),
                                     AgentAddr("g", "52:54:00:aa:bb:cc", "2001:db8::5", 64)]
    assert parse_agent("g", None) == []


def test_has_agent() -> None:
    yes = ("<domain><devices><channel type='unix'><target type='virtio' "
           "name='org.qemu.guest_agent.0'/></channel></devices></domain>")
    no = ("<domain><devices><channel type='spicevmc'><target type='virtio' "
          "name='com.redhat.spice.0'/></channel></devices></domain>")
    assert has_agent(yes) and not has_agent(no)


def test_show_lists_every_address_with_its_source() -> None:
    rows = merge_addresses(live(), [lease(NAT_MAC, "192.168.122.10")],
                           [Neighbour(LAN_MAC, "192.168.1.50"),
                            Neighbour(LAN_MAC, "192.168.1.51")])
    by = addresses_by_mac(rows)
    assert [a["ip"] for a in by[LAN_MAC]] == ["192.168.1.50", "192.168.1.51"]
    data = show_data(live(), rows)
    nics = {x["mac"].lower(): x for x in data["interfaces"]}
    assert nics[NAT_MAC]["ip"] == "192.168.122.10"
    assert nics[NAT_MAC]["addresses"][0]["source"] == "dhcp-lease"
    assert nics[TAP_MAC]["ip"] is None and nics[TAP_MAC]["addresses"] == []
