"""IPv6 with real guests (issue 23), on networks `kvmnet apply` made in the lab libvirtd
(libvirt 9.0 here; 11.3 in the Debian 13 lab, tests/lab/trixie.py, with its iptables and
its nftables backend):

- dual-stack NAT with NAT66 (`nat: {ipv6: true}`; libvirt masquerades IPv6 since 6.5,
  so on both labs) and `ipv6: {dhcp: RANGE, slaac: true}`: the guest gets THE SLAAC
  address of its MAC (EUI-64) AND its DHCPv6 reservation (by its DUID: busybox's
  udhcpc6 always sends an empty Client FQDN option first, so a reservation by name, what
  a NIC's `ipv6:` makes, never matches it), reaches "the internet" (namespace
  kvt-v6-inet) over IPv6 masqueraded to the host's uplink address, and is reached from
  there by port forwards on the host's IPv6 address (to its IPv6 one) and IPv4 address;
- an IPv6-only routed network (SLAAC only): the guest reaches the LAN router (namespace
  kvt-v6-lan) with its own address once the route `kvmnet render` wrote (used as is)
  is installed there, and not before;
- a bridged network: the guest takes its address by a router advertisement of the LAN
  router (dnsmasq in kvt-v6-lan, RA only for IPv6, DHCPv4 beside it).

DHCPv6 in the guest needs busybox's udhcpc6, which Debian 12's busybox-static lacks: the
guests here carry the Debian 13 lab's static busybox 1.37 (lab.guest.dhcp6_busybox);
without one the DHCPv6 assertions are skipped, saying why.

Topology (everything named kvt-v6-*, bridges and veths kvt6*, removed by name before
and after; 10.162.0.0/16, fd00:162::/32, 2001:db8:162::/48):

    kvt-v6-inet  up0 10.162.1.254 2001:db8:162:1::fe --veth-- kvt6up0 .1 / ::1  (lab)
    kvt-v6-lan   lan0 10.162.5.254 2001:db8:162:5::fe --veth-- kvt6lan0 in kvt6br0
                 (the LAN router: RA, DHCPv4)           kvt6br0 10.162.5.1 2001:db8:162:5::1
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyroute2 import netns as pr_netns

from lab.guest import dhcp6_busybox, start_guest, wait_for_serial
from lab.libvirtd import (
    URI,
    Libvirtd,
    iproute,
    pids_in_netns,
    proc_alive,
    quiet_libvirt,
    remove_objects,
    terminate,
)

pytestmark = pytest.mark.e2e

PREFIX = "kvt-v6-"
OWNER = "kvt-v6"
NS_INET, NS_LAN = "kvt-v6-inet", "kvt-v6-lan"
UPLINK, BRIDGE, LAN_PORT = "kvt6up0", "kvt6br0", "kvt6lan0"
UP_HOST, UP_HOST6 = "10.162.1.1", "2001:db8:162:1::1"
INET, INET6 = "10.162.1.254", "2001:db8:162:1::fe"
LAN_HOST, LAN_HOST6 = "10.162.5.1", "2001:db8:162:5::1"
ROUTER, ROUTER6 = "10.162.5.254", "2001:db8:162:5::fe"
LAN_PREFIX = "2001:db8:162:5::/64"
NAT, RT, LAN = "kvt-v6-nat", "kvt-v6-rt", "kvt-v6-lan"
NAT_PREFIX, RT_PREFIX = "fd00:162:10::/64", "2001:db8:162:20::/64"
G_NAT, G_RT, G_BR = "kvt-v6-nat1", "kvt-v6-rt1", "kvt-v6-br1"
MACS = {G_NAT: "52:54:00:a2:10:10", G_RT: "52:54:00:a2:20:10", G_BR: "52:54:00:a2:05:10"}
NAT_IP, NAT_IP6 = "10.162.10.10", "fd00:162:10::10"
DUID = "00:03:00:01:" + MACS[G_NAT]      # DUID-LL: what busybox's udhcpc6 sends
FWD_PORT, PEER_PORT = 8086, 8080
RUN = Path("/run/kvt-v6")
HERE = Path(__file__).parent
KVMNET = str(Path(sys.executable).parent / "kvmnet")
BOOT = 180.0

SPEC: dict[str, Any] = {
    "owner": OWNER,
    "host": {"bridges": {BRIDGE: {       # the host's LAN bridge (the test makes it)
        "ports": [LAN_PORT], "stp": False,
        "address": [f"{LAN_HOST}/24", f"{LAN_HOST6}/64"], "gateway": ROUTER}}},
    "networks": {
        NAT: {"mode": "nat", "bridge": "kvt6nat0", "nat": {"ipv6": True},
              "ipv4": {"address": "10.162.10.1/24", "dhcp": "10.162.10.100-10.162.10.199"},
              "ipv6": {"address": "fd00:162:10::1/64",
                       "dhcp": "fd00:162:10::100-fd00:162:10::1ff", "slaac": True,
                       # busybox's udhcpc6 sends an empty Client FQDN option before any
                       # other, so it cannot be matched by name: by its DUID (DUID-LL)
                       "hosts": [{"id": DUID, "ip": NAT_IP6}]},
              "forwards": [
                  {"proto": "tcp", "host_port": FWD_PORT, "guest": G_NAT, "guest_port": 80,
                   "listen": UP_HOST},
                  {"proto": "tcp", "host_port": FWD_PORT, "address": NAT_IP6,
                   "guest_port": 80, "listen": UP_HOST6}]},
        RT: {"mode": "route", "bridge": "kvt6rt0",
             "ipv6": {"address": "2001:db8:162:20::1/64"}},
        LAN: {"mode": "bridge", "bridge": BRIDGE}},
    "guests": {
        G_NAT: {"interfaces": [{"network": NAT, "model": "virtio", "mac": MACS[G_NAT],
                                "ipv4": NAT_IP}]},
        G_RT: {"interfaces": [{"network": RT, "model": "virtio", "mac": MACS[G_RT]}]},
        G_BR: {"interfaces": [{"network": LAN, "model": "virtio", "mac": MACS[G_BR]}]}},
}


def eui64(prefix: str, mac: str) -> str:
    """The SLAAC address a Linux guest makes from MAC in PREFIX (RFC 4291, modified
    EUI-64: the universal/local bit flipped, ff:fe in the middle)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:]
    net = ipaddress.IPv6Network(prefix)
    return str(net.network_address + int.from_bytes(iid, "big"))


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def ns_run(ns: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, *args], timeout)


def url(addr: str, path: str, port: int = 80) -> str:
    host = f"[{addr}]" if ":" in addr else addr
    return f"http://{host}:{port}{path}"


def wget(ns: str, target: str, timeout: float = 5) -> subprocess.CompletedProcess[str]:
    """GNU wget in NS, one try: stdout = body."""
    return ns_run(ns, ["wget", "--no-proxy", "-q", "-t", "1", "-T", str(timeout), "-O", "-",
                       target], timeout + 15)


class V6:
    def __init__(self, lv: Libvirtd, conn: Any, workdir: Path) -> None:
        self.lv, self.conn, self.workdir = lv, conn, workdir
        self.root = workdir / "root"
        self.logs: dict[str, Path] = {}
        self.doms: dict[str, Any] = {}
        self.drive: dict[str, str] = {}    # guest -> the address the lab drives it at
        self.busybox = dhcp6_busybox()

    def kvmnet(self, verb: str, data: dict[str, Any], *extra: str) -> Any:
        path = self.workdir / f"{verb}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        proc = run([KVMNET, verb, str(path), "-c", URI, "--netns", self.lv.netns, "--scope",
                    f"{PREFIX}*", "--root", str(self.root), "--json", *extra], 240)
        assert proc.returncode in (0, 2), f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout)

    def guest(self, name: str, command: str, timeout: float = 20) -> tuple[int, str]:
        """Run COMMAND in guest NAME over its /cgi-bin/run, from the lab namespace."""
        from urllib.parse import quote

        got = wget(self.lv.netns, url(self.drive[name], f"/cgi-bin/run?{quote(command, '')}"),
                   timeout)
        assert got.returncode == 0, f"cannot drive {name} at {self.drive[name]}: {got.stderr}"
        out, _, rc = got.stdout.rstrip("\n").rpartition("KVMNET-RC ")
        return int(rc), out

    def addresses6(self, name: str) -> set[str]:
        """The guest's global IPv6 addresses, from the kernel's /proc/net/if_inet6."""
        rc, out = self.guest(name, "cat /proc/net/if_inet6")
        assert rc == 0, out
        addrs = set()
        for line in out.splitlines():
            f = line.split()
            if len(f) == 6 and f[5].startswith("eth"):
                a = ipaddress.IPv6Address(int(f[0], 16))
                if not a.is_link_local:
                    addrs.add(str(a))
        return addrs

    def fetch(self, name: str, target: str, timeout: int = 5) -> tuple[int, str]:
        """Guest NAME fetches TARGET with busybox wget (its time limit: busybox timeout)."""
        return self.guest(name, f"timeout {timeout} wget -q -O - '{target}'", timeout + 15)

    def peers(self, ns: str) -> list[tuple[str, str]]:
        log = RUN / f"{ns}-peers.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [(p[1], p[2]) for p in (x.split() for x in lines) if p[:1] == ["PEER"]]


def cleanup(conn: Any, lab: str) -> list[str]:
    found: list[str] = []
    with quiet_libvirt():
        found += remove_objects(conn, PREFIX)
    for ns in (NS_INET, NS_LAN):
        if ns in pr_netns.listnetns():
            for pid in pids_in_netns(ns):   # only ever ours: peer servers, the LAN's dnsmasq
                if proc_alive(pid):
                    terminate(pid)
            pr_netns.remove(ns)
            found.append(f"namespace {ns}")
    with iproute(lab) as ipr:
        for name in (UPLINK, LAN_PORT, BRIDGE):
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)
                found.append(f"link {name}")
    shutil.rmtree(RUN, ignore_errors=True)
    return found


def make_namespaces(lab: str) -> None:
    for ns in (NS_INET, NS_LAN):
        pr_netns.create(ns)
    with iproute(lab) as ipr:
        ipr.link("add", ifname=UPLINK, kind="veth", peer={"ifname": "up0", "net_ns_fd": NS_INET})
        ipr.link("add", ifname=BRIDGE, kind="bridge", br_stp_state=0, br_forward_delay=0)
        ipr.link("add", ifname=LAN_PORT, kind="veth", peer={"ifname": "lan0", "net_ns_fd": NS_LAN})
        up, br, port = (ipr.link_lookup(ifname=n)[0] for n in (UPLINK, BRIDGE, LAN_PORT))
        ipr.link("set", index=port, master=br)
    # the lab forwards IPv6 (libvirt turns it on): it takes no RA, least of all the LAN's
    ns_run(lab, ["sysctl", "-qw", f"net.ipv6.conf.{BRIDGE}.accept_ra=0"])
    with iproute(lab) as ipr:
        for idx in (up, br, port):
            ipr.link("set", index=idx, state="up")
        for idx, a4, a6 in ((up, UP_HOST, UP_HOST6), (br, LAN_HOST, LAN_HOST6)):
            ipr.addr("add", index=idx, address=a4, prefixlen=24)
            ipr.addr("add", index=idx, address=a6, prefixlen=64, flags=0x02)  # IFA_F_NODAD
    for ns, ifname, a4, a6 in ((NS_INET, "up0", INET, INET6), (NS_LAN, "lan0", ROUTER, ROUTER6)):
        # routers with fixed addresses: no SLAAC address of their own from an RA
        ns_run(ns, ["sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_ra=0"])
        with iproute(ns) as ipr:
            for n in ("lo", ifname):
                ipr.link("set", index=ipr.link_lookup(ifname=n)[0], state="up")
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=a4, prefixlen=24)
            ipr.addr("add", index=idx, address=a6, prefixlen=64, flags=0x02)


def start_servers() -> list[subprocess.Popen[str]]:
    RUN.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, str(HERE / "peer_server.py"),
         str(PEER_PORT), str(RUN / f"{ns}-peers.log"), "::"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for ns in (NS_INET, NS_LAN)]
    log = RUN / "lan-dnsmasq.log"
    procs.append(subprocess.Popen(
        ["ip", "netns", "exec", NS_LAN, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
         "--port=0", "--interface=lan0", "--bind-interfaces", "--user=root",
         "--dhcp-range=10.162.5.100,10.162.5.149,255.255.255.0,1h",
         f"--dhcp-option=option:router,{ROUTER}", "--enable-ra",
         "--dhcp-range=2001:db8:162:5::,ra-only,64", "--ra-param=lan0,3,600",
         f"--dhcp-leasefile={RUN / 'lan.leases'}", f"--pid-file={RUN / 'lan-dnsmasq.pid'}",
         f"--log-facility={log}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 20
    for ns in (NS_INET, NS_LAN):
        while wget(ns, url("::1", "/ready", PEER_PORT), 2).returncode != 0:
            assert time.monotonic() < deadline, f"the peer server in {ns} does not answer"
            time.sleep(0.2)
    while "DHCP, IP range" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and procs[-1].poll() is None, \
            f"the LAN's dnsmasq did not start: {log}"
        time.sleep(0.1)
    return procs


@pytest.fixture(scope="module")
def v6(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[V6]:
    conn = libvirtd.open()
    lab = V6(libvirtd, conn, tmp_path_factory.mktemp("v6"))
    procs: list[subprocess.Popen[str]] = []
    try:
        old = cleanup(conn, libvirtd.netns)
        if old:
            print(f"\nv6: removed leftovers of an earlier run: {old}")
        make_namespaces(libvirtd.netns)
        procs = start_servers()
        (lab.root / "etc/libvirt").mkdir(parents=True)   # the forwards' hook goes there
        result = lab.kvmnet("apply", SPEC, "--yes")
        assert result["ok"], result
        busybox = {"busybox": lab.busybox} if lab.busybox else {}
        for name, net in ((G_NAT, NAT), (G_RT, RT), (G_BR, LAN)):
            lab.doms[name], lab.logs[name] = start_guest(
                conn, name, [{"network": net, "mac": MACS[name]}],
                extra_cmdline="kvmnet.dhcp6=1" if name == G_NAT else "", **busybox)
        lab.drive[G_NAT] = wait_for_serial(lab.logs[G_NAT], r"KVMNET-LEASE (\S+) ", BOOT,
                                           alive=lab.doms[G_NAT].isActive).group(1)
        lab.drive[G_BR] = wait_for_serial(lab.logs[G_BR], r"KVMNET-LEASE (\S+) ", BOOT,
                                          alive=lab.doms[G_BR].isActive).group(1)
        lab.drive[G_RT] = eui64(RT_PREFIX, MACS[G_RT])   # IPv6 only: its SLAAC address
        wait_for_serial(lab.logs[G_RT], r"KVMNET-UP ", BOOT, alive=lab.doms[G_RT].isActive)
        yield lab
    finally:
        for p in procs:
            if p.poll() is None:
                terminate(p.pid)
        for dom in lab.doms.values():
            with quiet_libvirt():
                try:
                    dom.destroy()
                except Exception:  # noqa: BLE001 (gone already: transient)
                    pass
        try:   # kvmnet removes its own: networks, the forwards' rules and state
            lab.kvmnet("apply", {"owner": OWNER, "networks": {}}, "--yes", "--allow-destroy")
        finally:
            cleanup(conn, libvirtd.netns)
            conn.close()


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


# ---------------------------------------------------------------- dual-stack NAT, NAT66

def test_nat_guest_gets_its_slaac_address_and_its_dhcpv6_reservation(v6: V6) -> None:
    slaac = eui64(NAT_PREFIX, MACS[G_NAT])
    got = _wait(lambda: slaac in v6.addresses6(G_NAT) and v6.addresses6(G_NAT), 60,
                f"{G_NAT} made no SLAAC address {slaac}")
    assert slaac in got
    if v6.busybox is None:
        pytest.skip("no busybox with udhcpc6 here (Debian 12's lacks it, and the Debian 13 "
                    "lab's root is not cached): the DHCPv6 reservation is not asked for")
    lease = str(ipaddress.IPv6Address(
        wait_for_serial(v6.logs[G_NAT], r"KVMNET-LEASE6 (\S+) eth0", 90).group(1)))
    assert lease == NAT_IP6, f"DHCPv6 gave {lease}, not the reservation {NAT_IP6}"
    assert {slaac, NAT_IP6} <= v6.addresses6(G_NAT)
    leases = v6.conn.networkLookupByName(NAT).DHCPLeases()
    mine = [x for x in leases if x["ipaddr"] == NAT_IP6]
    assert mine and mine[0]["clientid"] == DUID, leases   # matched by the guest's DUID


def test_nat_guest_reaches_the_internet_over_ipv6_masqueraded(v6: V6) -> None:
    path = f"/v6-nat-{uuid.uuid4().hex[:8]}"
    rc, out = _wait(lambda: (r := v6.fetch(G_NAT, url(INET6, path, PEER_PORT)))[0] == 0 and r,
                    45, f"{G_NAT} does not reach [{INET6}]:{PEER_PORT}")
    assert out.strip() == f"PEER {UP_HOST6} {path}", "not masqueraded to the uplink address"
    assert (UP_HOST6, path) in v6.peers(NS_INET)


@pytest.mark.parametrize("host", [UP_HOST6, UP_HOST])
def test_port_forward_reaches_the_guest_over_both_families(v6: V6, host: str) -> None:
    got = _wait(lambda: (r := wget(NS_INET, url(host, "/cgi-bin/peer", FWD_PORT)))
                .returncode == 0 and r, 30, f"[{host}]:{FWD_PORT} does not reach {G_NAT}")
    seen = got.stdout.strip().strip("[]").removeprefix("::ffff:")
    assert seen == (INET6 if ":" in host else INET), "the guest saw a translated source"


# ---------------------------------------------------------------- IPv6-only, routed

def test_routed_guest_has_only_its_slaac_address(v6: V6) -> None:
    addr = eui64(RT_PREFIX, MACS[G_RT])
    got = _wait(lambda: wget(v6.lv.netns, url(addr, "/")).returncode == 0, 60,
                f"{G_RT} does not answer at its SLAAC address {addr}")
    assert got
    assert v6.addresses6(G_RT) == {addr}
    rc, out = v6.guest(G_RT, "ip -4 addr show dev eth0 | grep -c inet; true")
    assert out.strip() == "0", f"{G_RT} has IPv4 on an IPv6-only network: {out}"


def test_routed_ipv6_needs_the_rendered_upstream_route(v6: V6) -> None:
    out = v6.workdir / "render"
    spec = v6.workdir / "render.yaml"
    spec.write_text(yaml.safe_dump(SPEC, sort_keys=False))
    proc = run([KVMNET, "render", str(spec), "-o", str(out)])
    assert proc.returncode == 0, proc.stderr
    text = (out / "routes" / f"{RT}.txt").read_text()
    lines = [x for x in text.splitlines() if x.startswith("ip -6 route add ")]
    assert lines == [f"ip -6 route add {RT_PREFIX} via {LAN_HOST6}"], text
    addr = eui64(RT_PREFIX, MACS[G_RT])
    path = f"/v6-rt-{uuid.uuid4().hex[:8]}"
    rc, _ = v6.fetch(G_RT, url(ROUTER6, path + "-no", PEER_PORT), 3)
    assert rc != 0, "the router answered without a route back"
    got = ns_run(NS_LAN, shlex.split(lines[0]))
    assert got.returncode == 0, got.stderr
    try:
        rc, body = v6.fetch(G_RT, url(ROUTER6, path, PEER_PORT))
        assert rc == 0, f"{G_RT} -> router with the route: {body}"
        assert body.strip() == f"PEER {addr} {path}", "the router saw a translated source"
        seen = wget(NS_LAN, url(addr, "/cgi-bin/peer"))
        assert seen.returncode == 0 and seen.stdout.strip().strip("[]") == ROUTER6
    finally:
        ns_run(NS_LAN, ["ip", "-6", "route", "del", RT_PREFIX])


# ---------------------------------------------------------------- bridged: the LAN's RA

def test_bridged_guest_takes_its_address_from_the_lans_router(v6: V6) -> None:
    addr = eui64(LAN_PREFIX, MACS[G_BR])
    got = _wait(lambda: addr in v6.addresses6(G_BR) and v6.addresses6(G_BR), 60,
                f"{G_BR} made no address {addr} from the LAN router's RA")
    assert got == {addr}
    rc, routes = v6.guest(G_BR, "cat /proc/net/ipv6_route")
    default = [r.split() for r in routes.splitlines() if r.startswith("0" * 32 + " 00 ")]
    assert default and ipaddress.IPv6Address(int(default[0][4], 16)).is_link_local, routes
    path = f"/v6-br-{uuid.uuid4().hex[:8]}"
    # (a slow TCG guest's first neighbour discovery may time out: a few tries)
    rc, body = _wait(lambda: (r := v6.fetch(G_BR, url(ROUTER6, path, PEER_PORT)))[0] == 0
                     and r, 30, f"{G_BR} does not reach the LAN router over IPv6")
    assert body.strip() == f"PEER {addr} {path}", body
