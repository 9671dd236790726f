"""The host read of plan (kvmnet.backend.host.read_host: pyroute2, then
kvmnet.parse.netlink) against a real kernel: in a network namespace of its own
(kvt-nl-*, 10.249.200.0/22) with a bridge, a veth port, IPv4 and IPv6 addresses, a
default route with a metric, a route in table 1000 and a blackhole, it must give
exactly what iproute2 shows there (`ip -j`, another reader of the same kernel).
Entering a namespace (kvmnet.backend.netns) for a socket or a child process must leave
this thread where it was and never create a namespace that does not exist."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from kvmnet.backend.host import read_host, set_master, wireless_links
from kvmnet.backend.netns import entered, netns_path
from kvmnet.errors import LiveError
from kvmnet.model.live import HostLink, HostRoute, HostState

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                                reason="needs root and ip (network namespaces)")
_count = itertools.count()


def run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=60)


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"kvt-nl-{os.getpid() % 10000}-{next(_count)}"
    run("ip", "netns", "add", name)
    try:
        for cmd in ("link set lo up", "link add kvtnlbr0 type bridge",
                    "link add kvtnlv0 type veth peer name kvtnlv1",
                    "link set kvtnlv0 master kvtnlbr0", "link set kvtnlbr0 up",
                    "link set kvtnlv0 up mtu 1400", "link set kvtnlv1 up",
                    "addr add 10.249.200.1/24 dev kvtnlbr0",
                    "addr add fd00:249::1/64 dev kvtnlbr0 nodad",
                    "addr add 10.249.201.1/24 dev kvtnlv1",
                    "route add default via 10.249.200.254 metric 50",
                    "route add 10.249.202.0/24 dev kvtnlbr0 table 1000",
                    "route add 10.249.203.0/24 via 10.249.201.2 metric 7",
                    "route add blackhole 10.249.203.128/25",
                    "-6 route add fd01::/64 via fd00:249::2 dev kvtnlbr0"):
            run("ip", "-n", name, *cmd.split())
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _ip_json(netns: str | None, *args: str) -> Any:
    where = ["-n", netns] if netns else []
    out = subprocess.run(["ip", *where, "-j", *args], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    return json.loads(out) if out.strip() else []


def _cidr(dst: str, family: int) -> str:
    if dst == "default":
        return "0.0.0.0/0" if family == 4 else "::/0"
    return dst if "/" in dst else f"{dst}/{32 if family == 4 else 128}"


def iproute2_host(netns: str | None) -> HostState:
    """The same host as iproute2 shows it (`ip -j`, an independent reader: the oracle).
    Wi-Fi is sysfs's (in our own namespace only), asserted apart."""
    links = {}
    shown = _ip_json(netns, "addr", "show")
    addrs = {a["ifname"]: tuple(f"{i['local']}/{i['prefixlen']}" for i in a["addr_info"])
             for a in shown}
    dynamic = {a["ifname"]: tuple(f"{i['local']}/{i['prefixlen']}" for i in a["addr_info"]
                                  if i.get("dynamic")) for a in shown}
    for m in _ip_json(netns, "-d", "link", "show"):
        name = m["ifname"]
        links[name] = HostLink(
            name=name, index=m["ifindex"], kind=m.get("linkinfo", {}).get("info_kind", ""),
            master=m.get("master"), up="UP" in m["flags"], mac=m.get("address"),
            mtu=m.get("mtu"), wireless=False, addresses=addrs.get(name, ()),
            dynamic=dynamic.get(name, ()), **_devconf(netns, name), **_kind(m))
    routes = tuple(
        HostRoute(dst=_cidr(r["dst"], family), dev=r.get("dev"), gateway=r.get("gateway"),
                  metric=r.get("metric"))
        for family in (4, 6)
        for r in _ip_json(netns, f"-{family}", "route", "show", "table", "main"))
    return HostState(links=links, routes=routes, readable=True)


def _kind(m: dict[str, Any]) -> dict[str, Any]:
    """What `ip -d` shows of a bond (its mode), a VLAN (its link and id) and a bridge
    (VLAN filtering)."""
    info = m.get("linkinfo", {})
    kind, data = info.get("info_kind", ""), info.get("info_data", {})
    if kind == "bond" and "mode" in data:
        return {"bond_mode": data["mode"]}
    if kind == "vlan" and "id" in data and "link" in m:
        return {"vlan": (m["link"], int(data["id"]))}
    if kind == "bridge" and "vlan_filtering" in data:
        return {"vlan_filtering": bool(data["vlan_filtering"])}
    return {}


def _devconf(netns: str | None, name: str) -> dict[str, Any]:
    """accept_ra, IPv6 forwarding and addr_gen_mode of a link, from its sysctl files
    (read inside the namespace: /proc/sys/net shows the reader's)."""
    def read(key: str) -> int | None:
        where = ["ip", "netns", "exec", netns] if netns else []
        r = subprocess.run([*where, "cat", f"/proc/sys/net/ipv6/conf/{name}/{key}"],
                           capture_output=True, text=True, timeout=30, check=False)
        return int(r.stdout) if r.returncode == 0 else None

    fwd = read("forwarding")
    return {"accept_ra": read("accept_ra"), "forwarding6": None if fwd is None else bool(fwd),
            "addr_gen_mode": read("addr_gen_mode")}


def comparable(h: HostState) -> tuple[Any, ...]:
    """Order aside (the kernel's dump order and ip's may differ), and Wi-Fi aside; a
    permanent MAC equal to the current one counts as none (`ip -j` prints `permaddr`
    only when they differ, netlink always)."""
    links = {n: replace(x, addresses=tuple(sorted(x.addresses)), wireless=False,
                        perm_mac=None if x.perm_mac == x.mac else x.perm_mac)
             for n, x in h.links.items()}
    return links, sorted(h.routes, key=repr), h.readable


def test_same_as_iproute2_in_a_namespace(ns: str) -> None:
    got = read_host(ns)
    assert comparable(got) == comparable(iproute2_host(ns))
    assert not any(x.wireless for x in got.links.values())
    br, port = got.links["kvtnlbr0"], got.links["kvtnlv0"]
    assert (br.kind, port.kind, port.master, port.mtu) == ("bridge", "veth", "kvtnlbr0", 1400)
    assert "10.249.200.1/24" in br.addresses and "fd00:249::1/64" in br.addresses
    routes = {r.dst: r for r in got.routes}
    assert (routes["0.0.0.0/0"].gateway, routes["0.0.0.0/0"].metric) == ("10.249.200.254", 50)
    assert routes["10.249.203.128/25"].dev is None  # the blackhole
    assert routes["fd01::/64"].gateway == "fd00:249::2"
    assert "10.249.202.0/24" not in routes  # table 1000, not main


def test_same_as_iproute2_here() -> None:
    for _ in range(3):  # other sessions may add or remove a link meanwhile: read again
        if comparable(read_host()) == comparable(iproute2_host(None)):
            break
    got = read_host()
    assert comparable(got) == comparable(iproute2_host(None))
    assert {n for n, x in got.links.items() if x.wireless} == {
        n for n in got.links if any(os.path.lexists(f"/sys/class/net/{n}/{mark}")
                                    for mark in ("wireless", "phy80211"))}


def test_wifi_check_reads_the_namespaces_own_sysfs(ns: str, monkeypatch: Any) -> None:
    """No Wi-Fi here to test with: a bridge's sysfs folder has `bridge` in it, which
    stands in for `phy80211`. The namespace's bridge is found, and ours has none such."""
    from kvmnet.parse import sysfs

    assert wireless_links(["kvtnlbr0", "kvtnlv0", "lo"], ns) == frozenset()
    monkeypatch.setattr(sysfs, "WIFI_ENTRIES", ("bridge",))
    assert wireless_links(["kvtnlbr0", "kvtnlv0", "lo"], ns) == {"kvtnlbr0"}
    assert not os.path.exists("/sys/class/net/kvtnlbr0")  # /sys here is our namespace's
    assert wireless_links(["kvtnlbr0"]) == frozenset()
    assert read_host(ns).links["kvtnlbr0"].wireless


def test_a_missing_namespace_is_an_error_and_is_not_created() -> None:
    name = f"kvt-nl-missing-{os.getpid()}"
    with pytest.raises(LiveError, match=f"network namespace {name}: No such file"):
        read_host(name)
    with pytest.raises(LiveError, match=f"network namespace {name}: No such file"):
        set_master("kvtnlv0", "kvtnlbr0", name)  # the writer's door, the same socket
    assert not os.path.exists(netns_path(name))


def test_set_master_in_a_namespace(ns: str) -> None:
    run("ip", "-n", ns, "link", "set", "kvtnlv0", "nomaster")
    set_master("kvtnlv0", "kvtnlbr0", ns, mtu=1300)
    port = read_host(ns).links["kvtnlv0"]
    assert (port.master, port.mtu, port.up) == ("kvtnlbr0", 1300, True)


def _ns_ident(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def test_entering_leaves_this_thread_where_it_was(ns: str) -> None:
    mine = _ns_ident("/proc/thread-self/ns/net")
    with entered(ns):
        assert _ns_ident("/proc/thread-self/ns/net") == _ns_ident(netns_path(ns))
        child = subprocess.run(["ip", "-o", "link", "show", "kvtnlbr0"], capture_output=True,
                               text=True, check=False)
    assert child.returncode == 0, child.stderr  # the child was made in there
    assert _ns_ident("/proc/thread-self/ns/net") == mine
    with pytest.raises(RuntimeError), entered(ns):
        raise RuntimeError("boom")
    assert _ns_ident("/proc/thread-self/ns/net") == mine


@pytest.mark.skipif(not shutil.which("nft"), reason="needs nft")
def test_firewall_read_runs_nft_in_the_namespace(ns: str, tmp_path: Any) -> None:
    from kvmnet.backend.firewall import read_firewall
    from kvmnet.backend.nft import run as _run

    run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "kvtnlmark")
    assert "kvtnlmark" in _run(["nft", "list", "tables"], ns).stdout
    assert "kvtnlmark" not in _run(["nft", "list", "tables"], None).stdout
    fw = read_firewall(ns, tmp_path)
    assert fw.error is None and fw.state_text is None
    missing = read_firewall(f"kvt-nl-missing-{os.getpid()}", tmp_path)
    assert missing.error is not None and "No such file" in missing.error
