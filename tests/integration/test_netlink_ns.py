"""The host read of plan (kvmnet.backend.host.read_host, over kvmnet.backend.netlink_read) against a
real kernel: in a network namespace of its own (kvt-nl-*, 10.249.200.0/22) with a bridge,
a veth port, IPv4 and IPv6 addresses, a default route with a metric, a route in table
1000 and a blackhole, it must give exactly what pyroute2 reads there (the reader it
replaced). Entering a namespace (kvmnet.backend.netns) for a socket or a child process must
leave this thread where it was and never create a namespace that does not exist."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from kvmnet.backend.host import _is_wireless, read_host
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


def pyroute2_host(netns: str | None) -> HostState:
    """The pyroute2 reader kvmnet used before kvmnet.backend.netlink_read (the reference)."""
    from pyroute2 import IPRoute

    def attr(msg: Any, name: str) -> Any:
        return msg.get_attr(name)

    with IPRoute(netns=netns, flags=0) if netns else IPRoute() as ipr:
        links_raw = list(ipr.get_links())
        names = {m["index"]: attr(m, "IFLA_IFNAME") for m in links_raw}
        addrs: dict[int, list[str]] = {}
        for a in ipr.get_addr():
            addrs.setdefault(a["index"], []).append(f"{attr(a, 'IFA_ADDRESS')}/{a['prefixlen']}")
        links = {}
        for m in links_raw:
            name = names[m["index"]]
            info = attr(m, "IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
            links[name] = HostLink(
                name=name, index=m["index"], kind=kind or "",
                master=names.get(attr(m, "IFLA_MASTER")), up=bool(m["flags"] & 1),
                mac=attr(m, "IFLA_ADDRESS"), mtu=attr(m, "IFLA_MTU"),
                wireless=_is_wireless(name, netns), addresses=tuple(addrs.get(m["index"], ())))
        routes = []
        for family in (2, 10):
            for r in ipr.get_routes(family=family, table=254):
                dst = attr(r, "RTA_DST")
                routes.append(HostRoute(
                    dst=f"{dst}/{r['dst_len']}" if dst else ("0.0.0.0/0" if family == 2
                                                             else "::/0"),
                    dev=names.get(attr(r, "RTA_OIF")), gateway=attr(r, "RTA_GATEWAY"),
                    metric=attr(r, "RTA_PRIORITY")))
    return HostState(links=links, routes=tuple(routes), readable=True)


def test_same_as_pyroute2_in_a_namespace(ns: str) -> None:
    got = read_host(ns)
    assert got == pyroute2_host(ns)
    br, port = got.links["kvtnlbr0"], got.links["kvtnlv0"]
    assert (br.kind, port.kind, port.master, port.mtu) == ("bridge", "veth", "kvtnlbr0", 1400)
    assert "10.249.200.1/24" in br.addresses and "fd00:249::1/64" in br.addresses
    routes = {r.dst: r for r in got.routes}
    assert (routes["0.0.0.0/0"].gateway, routes["0.0.0.0/0"].metric) == ("10.249.200.254", 50)
    assert routes["fd01::/64"].gateway == "fd00:249::2"
    assert "10.249.202.0/24" not in routes  # table 1000, not main


def test_same_as_pyroute2_here() -> None:
    for _ in range(3):  # other sessions may add or remove a link meanwhile: read again
        if read_host() == pyroute2_host(None):
            return
    assert read_host() == pyroute2_host(None)


def test_a_missing_namespace_is_an_error_and_is_not_created() -> None:
    name = f"kvt-nl-missing-{os.getpid()}"
    with pytest.raises(LiveError, match=f"network namespace {name}: No such file"):
        read_host(name)
    assert not os.path.exists(netns_path(name))


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
    from kvmnet.backend.firewall import _run, read_firewall

    run("ip", "netns", "exec", ns, "nft", "add", "table", "inet", "kvtnlmark")
    assert "kvtnlmark" in _run(["nft", "list", "tables"], ns).stdout
    assert "kvtnlmark" not in _run(["nft", "list", "tables"], None).stdout
    fw = read_firewall(ns, tmp_path)
    assert fw.error is None and fw.state_text is None
    missing = read_firewall(f"kvt-nl-missing-{os.getpid()}", tmp_path)
    assert missing.error is not None and "No such file" in missing.error
