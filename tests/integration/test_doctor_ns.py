"""kvmnet doctor against a real kernel: each broken condition is built for real inside a
network namespace of its own (kvt-doc-*, 10.220.0.0/16), doctor must find it, say what it
means and print the fix; where the fix is a command, running it must clear the check.
Wi-Fi ports and br_netfilter come from a fake sysfs/proc root. The firewall backend,
reachability and duplicate MACs use the lab libvirtd; guest addresses from the neighbour
table use a bridge + veth into a second namespace that pings."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from kvmnet.backend.neigh import fetch_neighbours, merge_addresses
from kvmnet.cli.main import main
from kvmnet.doctor.checks import Check
from kvmnet.doctor.run import doctor
from kvmnet.model.live import LiveDomain, LiveNic, LiveState
from kvmnet.model.spec import Spec

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"),
    reason="needs root, ip and nft (network namespaces)")

TEST_URI = "test:///default"   # libvirt in-process: its networks are not on any host
_count = itertools.count()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=60)


def make_ns(tag: str) -> str:
    name = f"kvt-doc-{tag}{os.getpid() % 10000}-{next(_count)}"
    run("ip", "netns", "add", name)
    run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
    return name


@pytest.fixture
def ns() -> Iterator[str]:
    name = make_ns("")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def in_ns(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run("ip", "netns", "exec", ns, *args)


def checks(ns: str | None, spec: Spec | None = None, uri: str = TEST_URI,
           **kw: Path) -> dict[str, Check]:
    _facts, got = doctor(uri, spec, "spec.yaml", ns, **kw)
    return {c.id: c for c in got}


def run_fix(check: Check) -> None:
    """Run each command line of a fix as an argument list (no shell)."""
    for line in check.fix.splitlines():
        line = line.split("   #", 1)[0].strip()
        if line and not line.startswith("#") and " > " not in line:
            run(*shlex.split(line))


def nat(name: str, third: int, **extra: object) -> Spec:
    return Spec.model_validate({"networks": {name: {
        "mode": "nat", "bridge": f"kvt-docnat{third}",
        "ipv4": {"address": f"10.220.{third}.1/24"}, **extra}}})


def test_ip_forward_off_in_the_namespace(ns: str) -> None:
    in_ns(ns, "sysctl", "-w", "net.ipv4.ip_forward=0")
    c = checks(ns, nat("kvt-nat1", 1))["ip_forward"]
    assert c.status == "fail" and "kvt-nat1" in c.message
    assert c.fix.splitlines()[0] == f"ip netns exec {ns} sysctl -w net.ipv4.ip_forward=1"
    run_fix(c)
    assert in_ns(ns, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    assert checks(ns, nat("kvt-nat1", 1))["ip_forward"].status == "ok"


def test_ip6_forward_off_in_the_namespace() -> None:
    """(issue 23; its own namespace, kvt-v6-*: the IPv6 helper's prefix and subnets)"""
    ns = f"kvt-v6-doc{os.getpid() % 10000}"
    subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
    run("ip", "netns", "add", ns)
    try:
        spec = Spec.model_validate({"networks": {"kvt-v6-doc": {
            "mode": "nat", "bridge": "kvt6doc0", "nat": {"ipv6": True},
            "ipv4": {"address": "10.162.200.1/24"}, "ipv6": {"address": "fd00:162:200::1/64"}}}})
        in_ns(ns, "sysctl", "-w", "net.ipv6.conf.all.forwarding=0")
        c = checks(ns, spec)["ip6_forward"]
        assert c.status == "fail" and "kvt-v6-doc" in c.message
        assert c.fix.splitlines()[0] == (
            f"ip netns exec {ns} sysctl -w net.ipv6.conf.all.forwarding=1")
        run_fix(c)
        assert in_ns(ns, "cat", "/proc/sys/net/ipv6/conf/all/forwarding").stdout.strip() == "1"
        assert checks(ns, spec)["ip6_forward"].status == "ok"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def test_forward_drop_policy(ns: str) -> None:
    in_ns(ns, "nft", "add", "table", "ip", "filter")
    in_ns(ns, "nft", "add", "chain", "ip", "filter", "FORWARD",
          "{ type filter hook forward priority 0 ; policy drop ; }")
    spec = nat("kvt-nat2", 2)
    c = checks(ns, spec)["forward_policy"]
    assert c.status == "fail" and "ip filter FORWARD" in c.message
    assert (f'ip netns exec {ns} nft insert rule ip filter FORWARD iifname "kvt-docnat2" '
            "accept") in c.fix
    run_fix(c)
    after = checks(ns, spec)
    assert after["forward_policy"].status == "warn"     # let through, policy still drop
    assert after["firewall_backend"].status == "skip"   # no libvirt here


def test_subnet_on_a_host_route(ns: str) -> None:
    in_ns(ns, "ip", "link", "add", "kvt-doc-d0", "type", "veth", "peer", "name", "kvt-doc-d1")
    in_ns(ns, "ip", "addr", "add", "10.220.5.1/24", "dev", "kvt-doc-d0")
    in_ns(ns, "ip", "link", "set", "kvt-doc-d1", "up")
    in_ns(ns, "ip", "link", "set", "kvt-doc-d0", "up")
    c = checks(ns, nat("kvt-nat5", 5))["route_collision"]
    assert c.status == "fail"
    assert "kvt-nat5 (10.220.5.0/24) overlaps the host route 10.220.5.0/24" in c.message
    assert "dev kvt-doc-d0" in c.message
    assert c.fix == "# in spec.yaml: networks.kvt-nat5.ipv4.address: 192.168.100.1/24"
    assert checks(ns, nat("kvt-nat6", 6))["route_collision"].status == "ok"


def test_mtu_mismatch(ns: str) -> None:
    in_ns(ns, "ip", "link", "add", "kvt-doc-br0", "type", "bridge")
    in_ns(ns, "ip", "link", "add", "kvt-doc-v0", "type", "veth", "peer", "name", "kvt-doc-v1")
    in_ns(ns, "ip", "link", "set", "kvt-doc-v0", "master", "kvt-doc-br0")
    in_ns(ns, "ip", "link", "set", "kvt-doc-br0", "mtu", "1400")
    c = checks(ns)["mtu"]
    assert c.status == "warn"
    assert "kvt-doc-br0 has MTU 1400, its port kvt-doc-v0 1500" in c.message
    assert c.fix == f"ip netns exec {ns} ip link set dev kvt-doc-v0 mtu 1400"
    run_fix(c)
    assert checks(ns)["mtu"].status == "ok"


def test_bridge_down_and_missing(ns: str) -> None:
    in_ns(ns, "ip", "link", "add", "kvt-doc-br1", "type", "bridge")   # created down
    spec = Spec.model_validate({"networks": {
        "kvt-lan": {"mode": "bridge", "bridge": "kvt-doc-br1"},
        "kvt-gone": {"mode": "bridge", "bridge": "kvt-doc-br9"}}})
    c = checks(ns, spec)["bridges"]
    assert c.status == "fail"
    assert "kvt-lan: its bridge kvt-doc-br1 is down" in c.message
    assert "kvt-gone: host bridge kvt-doc-br9 is missing" in c.message
    assert f"ip netns exec {ns} ip link set dev kvt-doc-br1 up" in c.fix.splitlines()
    run_fix(c)
    only_lan = Spec.model_validate({"networks": {"kvt-lan": spec.networks["kvt-lan"]}})
    assert checks(ns, only_lan)["bridges"].status == "ok"


def test_wifi_port_and_br_netfilter_from_fake_roots(ns: str, tmp_path: Path) -> None:
    in_ns(ns, "ip", "link", "add", "kvt-doc-br2", "type", "bridge")
    in_ns(ns, "ip", "link", "add", "kvt-doc-wl0", "type", "veth", "peer", "name", "kvt-doc-wl1")
    in_ns(ns, "ip", "link", "set", "kvt-doc-wl0", "master", "kvt-doc-br2")
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    (sysfs / "class/net/kvt-doc-wl0/phy80211").mkdir(parents=True)
    (sysfs / "class/net/wlp3s0/wireless").mkdir(parents=True)
    (sysfs / "module/br_netfilter").mkdir(parents=True)
    (proc / "sys/net/bridge").mkdir(parents=True)
    (proc / "sys/net/ipv4").mkdir(parents=True)
    (proc / "sys/net/bridge/bridge-nf-call-iptables").write_text("1\n")
    (proc / "sys/net/ipv4/ip_forward").write_text("1\n")
    spec = Spec.model_validate({
        "host": {"bridges": {"kvt-doc-br3": {"ports": ["wlp3s0"]}}},
        "networks": {"kvt-nat7": nat("kvt-nat7", 7).networks["kvt-nat7"]}})
    got = checks(ns, spec, sysfs_root=sysfs, proc_root=proc)
    w = got["wireless"]
    assert w.status == "fail"
    assert "wlp3s0 in kvt-doc-br3" in w.message and "kvt-doc-wl0 in kvt-doc-br2" in w.message
    assert "# remove wlp3s0 from host.bridges.kvt-doc-br3.ports in spec.yaml" in w.fix
    assert f"ip netns exec {ns} ip link set dev kvt-doc-wl0 nomaster" in w.fix
    b = got["br_netfilter"]
    assert b.status == "warn" and "kvt-doc-br2" in b.message and "kvt-doc-br3" in b.message
    assert "sysctl -w net.bridge.bridge-nf-call-iptables=0" in b.fix
    assert got["ip_forward"].status == "ok"            # read from the fake /proc
    run_fix(w)                                         # the Wi-Fi port leaves the bridge
    assert "kvt-doc-wl0" not in checks(ns, spec, sysfs_root=sysfs)["wireless"].message


def test_cli_json_and_exit_code(ns: str, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("networks:\n  kvt-nat8:\n    mode: nat\n    bridge: kvt-docnat8\n"
                    "    ipv4: {address: 10.220.8.1/24}\n")
    in_ns(ns, "sysctl", "-w", "net.ipv4.ip_forward=0")
    assert main(["doctor", "-c", TEST_URI, "--netns", ns, "--json", str(spec)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["netns"] == ns
    statuses = {c["id"]: c["status"] for c in data["checks"]}
    assert statuses["ip_forward"] == "fail" and statuses["libvirt"] == "ok"
    assert all(set(c) == {"id", "status", "title", "message", "fix"} for c in data["checks"])
    in_ns(ns, "sysctl", "-w", "net.ipv4.ip_forward=1")
    assert main(["doctor", "-c", TEST_URI, "--netns", ns, str(spec)]) == 0
    text = capsys.readouterr().out
    assert "IPv4 forwarding" in text and "FAIL" not in text


# -- the lab libvirtd ---------------------------------------------------------------

def nat_xml(name: str, bridge: str, third: int) -> str:
    from lab.netxml import network_xml

    return network_xml(name, bridge, f"10.220.{third}.1/24",
                       dhcp=(f"10.220.{third}.10", f"10.220.{third}.99"))


def domain_xml(name: str, mac: str, source: tuple[str, str]) -> str:
    """A guest that is only defined, never started: a NIC with a MAC is all doctor reads."""
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "memory", unit="MiB").text = "32"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type", arch="x86_64").text = "hvm"
    devs = etree.SubElement(dom, "devices")
    kind, src = source
    nic = etree.SubElement(devs, "interface", type=kind)
    etree.SubElement(nic, "mac", address=mac)
    etree.SubElement(nic, "source", **{"network" if kind == "network" else "bridge": src})
    return etree.tostring(dom, encoding="unicode")


def test_lab_reachable_backend_and_duplicate_macs(libvirtd, lv_conn) -> None:
    net = lv_conn.networkDefineXML(nat_xml("kvt-doc-nat", "kvt-docnat30", 30))
    net.create()
    mac = "52:54:00:dc:30:01"
    for d in ("kvt-doc-d1", "kvt-doc-d2"):
        lv_conn.defineXML(domain_xml(d, mac, ("network", "kvt-doc-nat")))
    got = checks(libvirtd.netns, uri=libvirtd.uri)
    v = lv_conn.getLibVersion()   # the daemon's: 9.0 on Debian 12, 11.3 in the Debian 13 lab
    version = f"libvirt {v // 1_000_000}.{v // 1000 % 1000}.{v % 1000} answers"
    assert got["libvirt"].status == "ok" and version in got["libvirt"].message
    be = got["firewall_backend"]
    # what libvirt really wrote, seen without kvmnet: its nftables table (libvirt 10+'s
    # nftables backend: the Debian 13 lab's --firewall nftables) or else its iptables chains
    tables = libvirtd.netns_exec(["nft", "list", "tables"]).stdout
    if "libvirt_network" in tables:
        assert be.status == "ok" and "nftables" in be.message and "libvirt_network" in be.message
    else:
        assert be.status == "ok" and "iptables" in be.message and "LIBVIRT_" in be.message
    assert got["ip_forward"].status == "ok"            # libvirt set it in its namespace
    assert "kvt-doc-nat" not in got["bridges"].message  # its bridge is there and up
    dup = got["duplicate_macs"]
    assert dup.status == "fail" and f"{mac} on kvt-doc-d1, kvt-doc-d2" in dup.message
    assert f"virsh detach-interface kvt-doc-d2 network --mac {mac} --config" in dup.fix


def test_lab_unreachable_uri() -> None:
    got = checks(None, uri="qemu+unix:///system?socket=/nonexistent/kvt-doc.sock")
    assert got["libvirt"].status == "fail" and "not running" in got["libvirt"].message
    assert "systemctl enable --now" in got["libvirt"].fix
    assert got["duplicate_macs"].status == "skip"
    assert got["dnsmasq"].status == "ok"               # a local URI: host checks still run


# -- guests' addresses from the neighbour table -------------------------------------

GUEST_MAC = "52:54:00:dc:40:05"


@pytest.fixture
def pinging_guest(ns: str) -> Iterator[str]:
    """ns is the host: bridge kvt-doc-nbr (10.220.40.1/24) with a veth whose other end is
    the 'guest' namespace (MAC GUEST_MAC, 10.220.40.5), which pings the host once."""
    guest = make_ns("g")
    try:
        in_ns(ns, "ip", "link", "add", "kvt-doc-nbr", "type", "bridge")
        in_ns(ns, "ip", "addr", "add", "10.220.40.1/24", "dev", "kvt-doc-nbr")
        in_ns(ns, "ip", "link", "set", "kvt-doc-nbr", "up")
        in_ns(ns, "ip", "link", "add", "kvt-doc-n0", "type", "veth", "peer", "name", "kvt-doc-n1")
        in_ns(ns, "ip", "link", "set", "kvt-doc-n0", "master", "kvt-doc-nbr", "up")
        in_ns(ns, "ip", "link", "set", "kvt-doc-n1", "netns", guest)
        in_ns(guest, "ip", "link", "set", "kvt-doc-n1", "address", GUEST_MAC)
        in_ns(guest, "ip", "addr", "add", "10.220.40.5/24", "dev", "kvt-doc-n1")
        in_ns(guest, "ip", "link", "set", "kvt-doc-n1", "up")
        in_ns(guest, "busybox", "ping", "-c", "1", "-W", "5", "10.220.40.1")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", guest], check=False, capture_output=True)


def test_neighbour_table_finds_a_bridged_guest(pinging_guest: str) -> None:
    neigh = fetch_neighbours(pinging_guest)
    assert any(n.mac == GUEST_MAC and n.ip == "10.220.40.5" and n.ifname == "kvt-doc-nbr"
               for n in neigh), neigh
    live = LiveState("qemu:///system", {}, {"kvt-doc-g": LiveDomain(
        "kvt-doc-g", True, (LiveNic(GUEST_MAC, "bridge", "kvt-doc-nbr"),))})
    rows = merge_addresses(live, [], neigh)
    assert [(r["guest"], r["network"], r["ip"], r["source"]) for r in rows] == [
        ("kvt-doc-g", "kvt-doc-nbr", "10.220.40.5", "neighbour")]


def test_lab_leases_cli_marks_neighbour_addresses(libvirtd, lv_conn, pinging_guest: str,
                                                  capsys) -> None:
    """`kvmnet leases` through the lab libvirtd: a defined guest on a host bridge gets its
    address from the neighbour table of the namespace given with --netns."""
    lv_conn.defineXML(domain_xml("kvt-doc-g", GUEST_MAC, ("bridge", "kvt-doc-nbr")))
    assert main(["leases", "-c", libvirtd.uri, "--netns", pinging_guest, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["leases"]
    mine = [r for r in rows if r["mac"] == GUEST_MAC]
    assert [(r["guest"], r["ip"], r["source"], r["network"]) for r in mine] == [
        ("kvt-doc-g", "10.220.40.5", "neighbour", "kvt-doc-nbr")]
    assert main(["show", "-c", libvirtd.uri, "--netns", pinging_guest, "--json"]) == 0
    nics = [x for x in json.loads(capsys.readouterr().out)["interfaces"]
            if x["mac"] == GUEST_MAC]
    assert nics[0]["ip"] == "10.220.40.5"
    assert nics[0]["addresses"][0]["source"] == "neighbour"
