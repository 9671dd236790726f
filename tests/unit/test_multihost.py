"""Many hosts in one spec, the pure part: where networks and guests live, the split
per host, the OVN share, and the checks of `hosts:` (kvmnet.spec.hosts)."""

from __future__ import annotations

import pytest

from kvmnet.errors import KvmnetError
from kvmnet.model.derive import nic_macs
from kvmnet.model.spec import Spec
from kvmnet.service.multihost import select, targets
from kvmnet.spec.check import check, errors
from kvmnet.spec.hosts import (
    floating,
    guest_hosts,
    network_hosts,
    ovn_share,
    share_host,
    split,
)
from kvmnet.spec.load import load_text

CLUSTER = """\
hosts:
  hv1: {uri: "qemu+ssh://root@hv1.example.com/system"}
  hv2: {uri: "qemu+ssh://root@hv2.example.com/system"}
  hv3: {uri: "qemu:///system", netns: lab}
ovn: {northbound: "tcp:10.0.0.5:6641"}
networks:
  default: {mode: nat, bridge: virbr0, ipv4: {address: 192.168.122.1/24,
            dhcp: 192.168.122.2-192.168.122.254}}
  storage: {mode: isolated, hosts: [hv1, hv2], bridge: virbr9,
            ipv4: {address: 10.9.0.1/24}}
  only3:   {mode: route, hosts: [hv3], bridge: virbr3, ipv4: {address: 10.3.0.1/24}}
  tenant:  {mode: overlay, ipv4: {address: 10.240.1.1/24, dhcp: 10.240.1.100-10.240.1.199}}
guests:
  web1:                                 # floating: wherever its domain is
    interfaces: [{network: default, ipv4: 192.168.122.10}, {network: tenant}]
  db1:                                  # floating, but storage is on hv1 and hv2 only
    interfaces: [{network: storage}]
  pinned:
    hosts: [hv3]
    interfaces: [{network: only3}, {network: tenant, ipv4: 10.240.1.20}]
"""


def spec_of(text: str) -> Spec:
    return load_text(text)[0]


def problems(text: str) -> list[str]:
    spec, pos = load_text(text, "c.yaml")
    return [f"{p.line}:{p.col}: {p.severity}: {p.message}" for p in check(spec, pos, "c.yaml")]


def errs(text: str) -> list[str]:
    return [p for p in problems(text) if ": error: " in p]


# ------------------------------------------------------------------ placement

def test_cluster_is_valid() -> None:
    assert errs(CLUSTER) == []


def test_a_network_without_hosts_lives_everywhere() -> None:
    s = spec_of(CLUSTER)
    assert network_hosts(s, "default") == ("hv1", "hv2", "hv3")
    assert network_hosts(s, "storage") == ("hv1", "hv2")
    assert network_hosts(s, "tenant") == ("hv1", "hv2", "hv3")   # overlay: via OVN


def test_guests_pinned_or_floating_among_hosts_with_all_their_networks() -> None:
    s = spec_of(CLUSTER)
    assert floating(s) == {"web1", "db1"}
    assert guest_hosts(s, "web1") == ("hv1", "hv2", "hv3")
    assert guest_hosts(s, "db1") == ("hv1", "hv2")
    assert guest_hosts(s, "pinned") == ("hv3",)


def test_split_gives_each_host_its_share() -> None:
    s = spec_of(CLUSTER)
    shares = split(s)
    assert list(shares) == ["hv1", "hv2", "hv3"]
    assert sorted(shares["hv1"].networks) == ["default", "storage", "tenant"]
    assert sorted(shares["hv3"].networks) == ["default", "only3", "tenant"]
    assert sorted(shares["hv1"].guests) == ["db1", "web1"]
    assert sorted(shares["hv3"].guests) == ["pinned", "web1"]
    for share in shares.values():          # a share is a single-host spec (OVN is planned
        assert share.hosts == {} and share.ovn is None               # once, apart)
        assert [p.message for p in errors(check(share)) if "overlay" not in p.message] == []


def test_split_pins_every_mac_to_the_whole_spec_one() -> None:
    s = spec_of(CLUSTER)
    whole = nic_macs(s)
    for share in split(s).values():
        for (g, i), mac in nic_macs(share).items():
            assert mac == whole[(g, i)]
            assert share.guests[g].interfaces[i].mac == mac


def test_ovn_share_is_overlay_networks_and_every_guest() -> None:
    share = ovn_share(spec_of(CLUSTER))
    assert share is not None and share.ovn is not None
    assert list(share.networks) == ["tenant"]
    assert sorted(share.guests) == ["db1", "pinned", "web1"]
    assert ovn_share(spec_of("networks: {a: {mode: nat}}\n")) is None


def test_a_spec_without_hosts_splits_into_nothing() -> None:
    s = spec_of("networks: {a: {mode: nat}}\n")
    assert split(s) == {}
    assert share_host(s, "a", "a")
    assert targets(s) == []


def test_targets_follow_the_spec_order_then_ovn() -> None:
    s = spec_of(CLUSTER)
    ts = targets(s)
    assert [(t.name, t.kind) for t in ts] == [("hv1", "host"), ("hv2", "host"),
                                                ("hv3", "host"), ("OVN northbound", "ovn")]
    assert ts[2].netns == "lab" and ts[0].uri == "qemu+ssh://root@hv1.example.com/system"
    assert [t.name for t in targets(s, ["hv3", "hv1"])] == ["hv1", "hv3", "OVN northbound"]


def test_select_refuses_an_unknown_host() -> None:
    s = spec_of(CLUSTER)
    assert select(s) == ["hv1", "hv2", "hv3"]
    with pytest.raises(KvmnetError, match="--host hv4: no such host in the spec; did you "
                                          "mean hv1?"):
        select(s, ["hv4"])


# ------------------------------------------------------------------ checks

HV = "hosts:\n  hv1: {uri: 'test:///default'}\n  hv2: {uri: 'qemu+ssh://hv2/system'}\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("networks:\n  a: {mode: isolated, hosts: [hv1]}\n",
     "2:23: error: networks.a.hosts: hosts: names hypervisors of the top-level hosts: "
     "section, which this spec has not"),
    (HV + "networks:\n  a: {mode: isolated, hosts: [hv11]}\n",
     "5:31: error: networks.a.hosts.0: unknown host 'hv11': did you mean 'hv1'?"),
    (HV + "networks:\n  a: {mode: isolated, hosts: [zz]}\n",
     "5:31: error: networks.a.hosts.0: unknown host 'zz': the hosts are hv1, hv2"),
    (HV + "networks:\n  a: {mode: isolated, hosts: []}\n",
     "5:23: error: networks.a.hosts: an empty hosts: list puts it nowhere"),
    (HV + "networks:\n  a: {mode: isolated, hosts: [hv1, hv1]}\n",
     "5:36: error: networks.a.hosts.1: host hv1 is listed twice"),
    (HV + "ovn: {northbound: 'unix:/run/ovn/nb.sock'}\nnetworks:\n"
     "  o: {mode: overlay, hosts: [hv1], ipv4: {address: 10.1.0.1/24, dhcp: 10.1.0.9-10.1.0.99}}\n",
     "6:22: error: networks.o.hosts: an overlay network lives in OVN"),
    ("hosts:\n  hv1: {uri: 'hv1.example.com'}\n",
     "2:14: error: hosts.hv1.uri: 'hv1.example.com' is not a libvirt URI: write DRIVER"),
    ("hosts:\n  a: {uri: 'test:///default'}\n  b: {uri: 'test:///default'}\n",
     "3:12: error: hosts.b.uri: test:///default is also the URI of host a"),
    ("hosts:\n  a: {uri: 'qemu+ssh://a/system', netns: lab}\n",
     "2:42: error: hosts.a.netns: netns: applies to a libvirtd on this machine"),
    ("hosts:\n  a: {uri: 'qemu:///system', netns: 'a/b'}\n",
     "2:37: error: hosts.a.netns: 'a/b' is not a network namespace name"),
    (HV + "host:\n  bridges: {br0: {ports: [eth0]}}\n",
     "4:1: error: host: host bridges describe one machine"),
    (HV + "networks:\n  a: {mode: isolated, hosts: [hv1]}\n"
     "guests:\n  g: {hosts: [hv1, hv2], interfaces: [{network: a}]}\n",
     "7:49: error: guests.g.interfaces.0.network: network a lives on hv1, not on hv2 where g "
     "is pinned"),
    (HV + "networks:\n  a: {mode: isolated, hosts: [hv1]}\n  b: {mode: isolated, hosts: [hv2]}\n"
     "guests:\n  g: {interfaces: [{network: a}, {network: b}]}\n",
     "8:3: error: guests.g: no host has all of g's networks (a: hv1; b: hv2)"),
    ("guests:\n  g: {hosts: [hv1], interfaces: []}\n",
     "2:7: error: guests.g.hosts: hosts: names hypervisors of the top-level hosts:"),
])
def test_host_checks(text: str, expected: str) -> None:
    got = errs(text)
    assert any(e.startswith(expected) for e in got), got
    assert len(got) == 1, got


@pytest.mark.parametrize(("uri", "ok"), [
    ("qemu:///system", True), ("qemu+unix:///system", True), ("test:///default", True),
    ("qemu+ssh:///system", False), ("qemu+tcp://hv1/system", False)])
def test_netns_is_for_a_local_uri(uri: str, ok: bool) -> None:
    got = errs(f"hosts:\n  a: {{uri: '{uri}', netns: lab}}\n")
    assert got == [] if ok else (len(got) == 1 and "reached over the network" in got[0]), got


def test_subnets_and_bridges_may_repeat_on_disjoint_hosts() -> None:
    text = HV + ("networks:\n"
                 "  a: {mode: nat, hosts: [hv1], bridge: virbr1, ipv4: {address: 10.5.0.1/24}}\n"
                 "  b: {mode: nat, hosts: [hv2], bridge: virbr1, ipv4: {address: 10.5.0.1/24}}\n")
    assert errs(text) == []
    both = text.replace("hosts: [hv2]", "hosts: [hv2, hv1]")
    got = errs(both)
    assert any("10.5.0.0/24 overlaps 10.5.0.0/24 of network a" in e for e in got), got
    assert any("bridge virbr1 is already used by network a" in e for e in got), got


def test_a_single_host_spec_checks_as_before() -> None:
    text = ("networks:\n  a: {mode: nat, bridge: virbr1, ipv4: {address: 10.5.0.1/24}}\n"
            "  b: {mode: nat, bridge: virbr1, ipv4: {address: 10.5.0.1/24}}\n")
    got = errs(text)
    assert len(got) == 2 and "overlaps" in got[0] + got[1] and "already used" in got[0] + got[1]
