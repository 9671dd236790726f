"""kvmnet doctor's checks, pure: facts in (as read from a host), status + meaning + fix out.
The same conditions are built for real in a namespace in
tests/integration/test_doctor_ns.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kvmnet.doctor.checks import (
    Facts,
    check_backend,
    check_bridge_nf,
    check_dnsmasq,
    check_forward_policy,
    check_ip_forward,
    check_libvirt,
    firewall_backend,
)
from kvmnet.doctor.links import (
    check_bridges,
    check_macs,
    check_mtu,
    check_route_collision,
    check_wireless,
)
from kvmnet.doctor.run import HostReader, run_checks
from kvmnet.model.live import (
    HostLink,
    HostRoute,
    HostState,
    LiveDomain,
    LiveNetwork,
    LiveNic,
    LiveState,
)
from kvmnet.model.spec import Network, Spec

NAT = {"mode": "nat", "bridge": "virbr9", "ipv4": {"address": "10.220.9.1/24",
                                                   "dhcp": "10.220.9.10-10.220.9.99"}}


def spec(**nets: dict[str, Any]) -> Spec:
    return Spec.model_validate({"networks": nets})


def facts(**kw: Any) -> Facts:
    kw.setdefault("spec", spec(nat9=NAT))
    kw.setdefault("live", LiveState("test:///default", {}, {}))
    return Facts(uri="test:///default", **kw)


def link(name: str, kind: str = "", master: str | None = None, up: bool = True,
         mtu: int = 1500) -> HostLink:
    return HostLink(name, abs(hash(name)) % 1000, kind, master, up, mtu=mtu)


def host(*links: HostLink, routes: tuple[HostRoute, ...] = ()) -> HostState:
    return HostState({ln.name: ln for ln in links}, routes)


# -- libvirt ------------------------------------------------------------------------

@pytest.mark.parametrize("error, fix", [
    ("cannot connect to qemu:///system: permission denied. Run as root", "usermod -aG libvirt"),
    ("cannot connect to qemu:///system: libvirtd is not running", "systemctl enable --now"),
])
def test_libvirt_unreachable(error: str, fix: str) -> None:
    c = check_libvirt(Facts(uri="qemu:///system", libvirt_error=error))
    assert c.status == "fail" and fix in c.fix and error in c.message


def test_libvirt_ok() -> None:
    c = check_libvirt(facts(libvirt_version="9.0.0"))
    assert c.status == "ok" and "9.0.0" in c.message


# -- ip_forward ---------------------------------------------------------------------

def test_ip6_forward() -> None:
    from kvmnet.doctor.forwarding6 import check_ip6_forward

    v6 = spec(nat9={**NAT, "nat": {"ipv6": True}, "ipv6": {"address": "fd00:220:9::1/64"}})
    off = check_ip6_forward(facts(ip6_forward="0", spec=v6))
    assert off.status == "fail" and "guests on nat9 reach the host over IPv6" in off.message
    assert off.fix.splitlines()[:2] == [
        "sysctl -w net.ipv6.conf.all.forwarding=1",
        "echo 'net.ipv6.conf.all.forwarding = 1' > /etc/sysctl.d/60-kvmnet-forward6.conf"
        "   # persist"]
    in_ns = check_ip6_forward(facts(ip6_forward="0", spec=v6, netns="kvt-doc-x"))
    assert in_ns.fix.startswith("ip netns exec kvt-doc-x sysctl -w net.ipv6")
    assert check_ip6_forward(facts(ip6_forward="1", spec=v6)).status == "ok"
    assert check_ip6_forward(facts(ip6_forward=None, spec=v6)).status == "skip"
    assert check_ip6_forward(facts(ip6_forward="0")).status == "skip"   # IPv4 only
    iso = spec(i={"mode": "isolated", "ipv6": {"address": "fd00:220:8::1/64"}})
    assert check_ip6_forward(facts(ip6_forward="0", spec=iso)).status == "skip"


def test_ip_forward() -> None:
    off = check_ip_forward(facts(ip_forward="0"))
    assert off.status == "fail" and "nat9" in off.message
    assert off.fix.splitlines()[0] == "sysctl -w net.ipv4.ip_forward=1"
    assert "/etc/sysctl.d/" in off.fix
    in_ns = check_ip_forward(facts(ip_forward="0", netns="kvt-doc-x"))
    assert in_ns.fix.splitlines()[0] == "ip netns exec kvt-doc-x sysctl -w net.ipv4.ip_forward=1"
    assert check_ip_forward(facts(ip_forward="1")).status == "ok"
    iso = spec(iso={"mode": "isolated", "ipv4": {"address": "10.220.8.1/24"}})
    assert check_ip_forward(facts(ip_forward="0", spec=iso)).status == "skip"
    assert check_ip_forward(facts(ip_forward=None)).status == "skip"


# -- br_netfilter -------------------------------------------------------------------

def test_bridge_nf() -> None:
    lan = spec(lan={"mode": "bridge", "bridge": "br0"})
    assert check_bridge_nf(facts(spec=lan), False).status == "ok"        # not loaded
    on = {"iptables": "1", "ip6tables": "1", "arptables": "0"}
    w = check_bridge_nf(facts(spec=lan, bridge_nf=on), False)
    assert w.status == "warn" and "br0" in w.message
    assert "sysctl -w net.bridge.bridge-nf-call-iptables=0" in w.fix
    assert "--physdev-is-bridged" in w.fix
    assert check_bridge_nf(facts(spec=lan, bridge_nf=on), True).status == "fail"
    assert check_bridge_nf(facts(bridge_nf=on), True).status == "ok"      # nothing bridged
    assert check_bridge_nf(facts(spec=lan, bridge_nf={"iptables": "0"}), True).status == "ok"


# -- firewall -----------------------------------------------------------------------

def ruleset(*items: dict[str, Any]) -> dict[str, Any]:
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *items]}


def chain(name: str, table: str = "filter", family: str = "ip", **kw: Any) -> dict[str, Any]:
    return {"chain": {"family": family, "table": table, "name": name, "handle": 1, **kw}}


def rule(chain_name: str, *expr: dict[str, Any], table: str = "filter") -> dict[str, Any]:
    return {"rule": {"family": "ip", "table": table, "chain": chain_name, "handle": 9,
                     "expr": list(expr)}}


def ifname(key: str, value: str) -> dict[str, Any]:
    return {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": value}}


FORWARD_DROP = chain("FORWARD", type="filter", hook="forward", prio=0, policy="drop")
ACCEPT = {"accept": None}


def test_forward_drop_breaks_nat() -> None:
    c = check_forward_policy(facts(ruleset=ruleset(FORWARD_DROP)))
    assert c.status == "fail" and "ip filter FORWARD" in c.message and "nat9" in c.message
    assert 'nft insert rule ip filter FORWARD iifname "virbr9" accept' in c.fix
    assert ('nft insert rule ip filter FORWARD oifname "virbr9" ct state related,established '
            "accept") in c.fix
    ns = check_forward_policy(facts(ruleset=ruleset(FORWARD_DROP), netns="kvt-doc-x"))
    assert ns.fix.startswith("ip netns exec kvt-doc-x nft insert rule")


def test_forward_drop_with_libvirt_rules_or_accepts_is_a_warning() -> None:
    libvirt = ruleset(FORWARD_DROP, chain("LIBVIRT_FWX"),
                      rule("FORWARD", {"counter": {}}, {"jump": {"target": "LIBVIRT_FWX"}}))
    assert check_forward_policy(facts(ruleset=libvirt)).status == "warn"
    accepted = ruleset(FORWARD_DROP, rule("FORWARD", ifname("iifname", "virbr*"), ACCEPT),
                       rule("FORWARD", ifname("oifname", "virbr9"), ACCEPT))
    assert check_forward_policy(facts(ruleset=accepted)).status == "warn"
    one_way = ruleset(FORWARD_DROP, rule("FORWARD", ifname("iifname", "virbr9"), ACCEPT))
    assert check_forward_policy(facts(ruleset=one_way)).status == "fail"


def test_forward_drop_docker_fix_uses_docker_user() -> None:
    docker = ruleset(FORWARD_DROP, chain("DOCKER-USER"),
                     rule("FORWARD", {"jump": {"target": "DOCKER-USER"}}))
    c = check_forward_policy(facts(ruleset=docker))
    assert c.status == "fail"
    assert "iptables -I DOCKER-USER -i virbr9 -j ACCEPT" in c.fix
    # once DOCKER-USER accepts the bridge both ways, the jump from FORWARD covers it
    fixed = ruleset(FORWARD_DROP, chain("DOCKER-USER"),
                    rule("FORWARD", {"jump": {"target": "DOCKER-USER"}}),
                    rule("DOCKER-USER", ifname("iifname", "virbr9"), ACCEPT),
                    rule("DOCKER-USER", ifname("oifname", "virbr9"), ACCEPT))
    assert check_forward_policy(facts(ruleset=fixed)).status == "warn"


def test_forward_policy_other_cases() -> None:
    accept = ruleset(chain("FORWARD", type="filter", hook="forward", policy="accept"))
    assert check_forward_policy(facts(ruleset=accept)).status == "ok"
    lan = spec(lan={"mode": "bridge", "bridge": "br0"})
    assert check_forward_policy(facts(spec=lan, ruleset=ruleset(FORWARD_DROP))).status == "ok"
    assert check_forward_policy(facts(ruleset_error="nft: not found")).status == "skip"
    inet = chain("forward", table="filter", family="inet", type="filter", hook="forward",
                 policy="drop")
    assert check_forward_policy(facts(ruleset=ruleset(inet))).status == "fail"


def test_firewall_backend() -> None:
    ipt = ruleset(chain("LIBVIRT_FWO"), chain("LIBVIRT_PRT", table="nat"))
    nft = ruleset({"table": {"family": "inet", "name": "libvirt_network", "handle": 7}})
    assert firewall_backend(ipt) == ["iptables"]
    assert firewall_backend(nft) == ["nftables"]
    assert firewall_backend(ruleset()) == []
    c = check_backend(facts(ruleset=ipt))
    assert c.status == "ok" and "iptables" in c.message
    assert "nftables" in check_backend(facts(ruleset=nft)).message
    assert check_backend(facts(ruleset=ruleset())).status == "skip"


def test_backend_and_kvmnet_forwards() -> None:
    fwd = spec(nat9={**NAT, "forwards": [{"proto": "tcp", "host_port": 2222,
                                          "address": "10.220.9.5", "guest_port": 22}]})
    ipt = ruleset(chain("LIBVIRT_FWO"))
    missing = check_backend(facts(spec=fwd, ruleset=ipt, spec_file="s.yaml"))
    assert missing.status == "warn" and missing.fix == "kvmnet apply s.yaml"
    table = {"table": {"family": "inet", "name": "kvmnet", "handle": 9}}
    mismatch = check_backend(facts(spec=fwd, ruleset=ruleset(chain("LIBVIRT_FWO"), table)))
    assert mismatch.status == "warn" and "do not match" in mismatch.message
    nft_both = ruleset({"table": {"family": "ip", "name": "libvirt_network", "handle": 7}},
                       table)
    # the DNAT table alone is not enough: the accept must sit in libvirt's own table
    assert check_backend(facts(spec=fwd, ruleset=nft_both)).status == "warn"
    accept = chain("kvmnet_forwards", family="ip", table="libvirt_network")
    assert check_backend(facts(spec=fwd, ruleset=ruleset(
        *nft_both["nftables"], accept))).status == "ok"
    ipt_ok = ruleset(chain("LIBVIRT_FWO"), chain("KVMNET_FWD"), table)
    assert check_backend(facts(spec=fwd, ruleset=ipt_ok)).status == "ok"


def test_dnsmasq() -> None:
    assert check_dnsmasq(facts(dnsmasq="/usr/sbin/dnsmasq")).status == "ok"
    c = check_dnsmasq(facts(dnsmasq=None))
    assert c.status == "fail" and "apt-get install dnsmasq-base" in c.fix
    assert check_dnsmasq(facts(dnsmasq=None, spec=spec())).status == "warn"


# -- links --------------------------------------------------------------------------

def test_wireless() -> None:
    s = Spec.model_validate({"host": {"bridges": {"br0": {"ports": ["wlp3s0"]}}}})
    c = check_wireless(facts(spec=s, wireless=frozenset({"wlp3s0"}), spec_file="s.yaml"))
    assert c.status == "fail" and "wlp3s0 in br0" in c.message
    assert "remove wlp3s0 from host.bridges.br0.ports in s.yaml" in c.fix
    h = host(link("br1", "bridge"), link("wlan0", master="br1"))
    live = check_wireless(facts(host=h, wireless=frozenset({"wlan0"}), netns="n1"))
    assert live.status == "fail" and "ip netns exec n1 ip link set dev wlan0 nomaster" in live.fix
    assert check_wireless(facts(host=h)).status == "ok"


def test_route_collision() -> None:
    lan = HostRoute("10.220.9.0/24", "eth0")
    c = check_route_collision(facts(host=host(link("eth0"), routes=(lan,)), spec_file="s.yaml"))
    assert c.status == "fail" and "nat9 (10.220.9.0/24)" in c.message and "eth0" in c.message
    assert c.fix == "# in s.yaml: networks.nat9.ipv4.address: 192.168.100.1/24"
    taken = (lan, HostRoute("192.168.100.0/22", "eth1"))
    c2 = check_route_collision(facts(host=host(routes=taken)))
    assert "192.168.104.1/24" in c2.fix
    own = HostRoute("10.220.9.0/24", "virbr9")        # the network's own route: fine
    default = HostRoute("0.0.0.0/0", "eth0", "10.0.0.1")
    assert check_route_collision(facts(host=host(routes=(own, default)))).status == "ok"
    assert check_route_collision(facts(host=None)).status == "skip"


def test_mtu() -> None:
    h = host(link("br0", "bridge", mtu=1400), link("v0", "veth", "br0", mtu=1500),
             link("v1", "veth", "br0", mtu=1400))
    c = check_mtu(facts(host=h, netns="ns"))
    assert c.status == "warn" and "br0 has MTU 1400, its port v0 1500" in c.message
    assert c.fix == "ip netns exec ns ip link set dev v0 mtu 1400"
    assert check_mtu(facts(host=host(link("br0", "bridge"), link("v0", master="br0")))
                     ).status == "ok"


def test_bridges() -> None:
    lan = spec(lan={"mode": "bridge", "bridge": "br7"})
    down = check_bridges(facts(spec=lan, host=host(link("br7", "bridge", up=False))))
    assert down.status == "fail" and "br7 is down" in down.message
    assert down.fix == "ip link set dev br7 up"
    missing = check_bridges(facts(spec=lan, host=host()))
    assert missing.status == "fail" and "host bridge br7 is missing" in missing.message
    planned = Spec.model_validate({"host": {"bridges": {"br7": {}}},
                                   "networks": {"lan": {"mode": "bridge", "bridge": "br7"}}})
    assert check_bridges(facts(spec=planned, host=host())).status == "warn"
    assert check_bridges(facts(spec=lan, host=host(link("br7", "bridge")))).status == "ok"
    # a live NAT network whose bridge went away
    ln = LiveNetwork("nat9", Network.model_validate(NAT), True, True, True, True,
                     bridge="virbr9")
    live = LiveState("qemu:///system", {"nat9": ln}, {})
    c = check_bridges(Facts(uri="qemu:///system", live=live, live_on_host=True, host=host()))
    assert c.status == "fail" and c.fix == "virsh net-destroy nat9 && virsh net-start nat9"


def test_duplicate_macs() -> None:
    mac = "52:54:00:dd:00:01"
    doms = {n: LiveDomain(n, False, (LiveNic(mac, "network", "nat9"),)) for n in ("d1", "d2")}
    c = check_macs(facts(live=LiveState("test:///default", {}, doms)))
    assert c.status == "fail" and f"{mac} on d1, d2" in c.message
    assert c.fix.startswith(f"virsh detach-interface d2 network --mac {mac} --config && "
                            "virsh attach-interface d2 network nat9 --mac 52:54:00:")
    s = Spec.model_validate({"networks": {"nat9": NAT},
                             "guests": {"web": {"interfaces": [{"network": "nat9",
                                                                "mac": mac}]}}})
    one = {"d1": doms["d1"]}
    c2 = check_macs(facts(spec=s, live=LiveState("test:///default", {}, one)))
    assert c2.status == "fail" and "guests.web.interfaces[0].mac" in c2.fix
    assert check_macs(facts(live=LiveState("t", {}, one))).status == "ok"
    assert check_macs(Facts(uri="x", libvirt_error="down")).status == "skip"


# -- the runner ---------------------------------------------------------------------

def test_run_checks_order_and_remote() -> None:
    ids = [c.id for c in run_checks(facts(host=host()))]
    assert ids == ["libvirt", "ip_forward", "ip6_forward", "br_netfilter", "forward_policy",
                   "firewall_backend", "dnsmasq", "wireless", "route_collision", "mtu",
                   "accept_ra", "bridges", "names", "duplicate_macs"]
    remote = replace(facts(), uri="qemu+ssh://h/system", host_error="runs on another machine")
    checks = run_checks(remote)
    assert [c.id for c in checks] == ids
    assert {c.status for c in checks[1:-1]} == {"skip"}


def test_reader_fake_roots(tmp_path) -> None:
    (tmp_path / "proc/sys/net/ipv4").mkdir(parents=True)
    (tmp_path / "proc/sys/net/ipv4/ip_forward").write_text("1\n")
    r = HostReader(netns="kvt-doc-none", sysfs_root=tmp_path / "sys",
                   proc_root=tmp_path / "proc")
    assert r.read("/proc/sys/net/ipv4/ip_forward") == "1\n"
    assert r.read("/proc/sys/net/bridge/bridge-nf-call-iptables") is None
