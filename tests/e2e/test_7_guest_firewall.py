"""Guest firewalls with real guests (issue 21): kvmnet's rule sets as libvirt nwfilters
on the NICs of two QEMU guests, on the lab libvirtd (libvirt 9.0 here; 11.3 in the
Debian 13 lab, tests/lab/trixie.py, with libvirt's iptables and nftables backends).

Its own small world, named kvt-fw-* (bridges and veths kvtf*), 10.155.0.0/16: in the
lab's namespace (the host) a routed network kvt-fw-net (10.155.1.0/24, DHCP) with the
guests kvt-fw-a (10.155.1.10) and kvt-fw-b (10.155.1.11), and two LAN namespaces
routed through the host: kvt-fw-lan1 (10.155.10.2) and kvt-fw-lan2 (10.155.20.2).
Guest a uses the set kvt-fw-web: default in drop; HTTP from the host (the tests drive the
guest over it), tcp/22, icmp and tcp/2222 from lan1's subnet, tcp/81 from guest b. The
guests boot after apply, so their leases are DHCP through the filters. lan1 and lan2
reach a across the host's routing, which libvirt's nwfilter does not see on the way in:
kvmnet's rules stop a's answers (kvmnet.render.nwfilter), and these tests see that work.
Then: reachability per rule, an open TCP session across two rule changes (kept, then
cut; the guest not restarted), a peer rule taken away and put back, anti-spoofing on b
(a second address is dropped, seen on lan1's side; its own passes), a guest restart and
a libvirtd restart, and removal: the lab namespace's whole ruleset (iptables, ebtables:
nft here) is as before, and no kvmnet nwfilter is left.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from pyroute2 import netns as pr_netns

from lab.firewall import diff, normalized, ruleset
from lab.guest import domain_xml, guest_files, serial_log_path, wait_for_serial
from lab.libvirtd import Libvirtd, iproute, pids_in_netns, quiet_libvirt, remove_objects, terminate

from .e2elab import describe, http_get, kvmnet, ns_exec
from .test_6_forwards import other_networks, restart_lab_libvirtd

PREFIX = "kvt-fw-"
NET, A, B, SET = "kvt-fw-net", "kvt-fw-a", "kvt-fw-b", "kvt-fw-web"
LAN1, LAN2 = "kvt-fw-lan1", "kvt-fw-lan2"
IP_A, IP_B, SPOOF = "10.155.1.10", "10.155.1.11", "10.155.1.99"
LAN1_IP, LAN2_IP = "10.155.10.2", "10.155.20.2"
MACS = {A: "52:54:00:15:50:0a", B: "52:54:00:15:50:0b"}
LINKS = (("kvtf-l1", LAN1, "10.155.10"), ("kvtf-l2", LAN2, "10.155.20"))
RULES = [
    {"direction": "in", "proto": "tcp", "ports": 80, "host": True},   # the tests drive a
    {"direction": "in", "proto": "tcp", "ports": 22, "peer": "10.155.10.0/24"},
    {"direction": "in", "proto": "icmp", "peer": "10.155.10.0/24"},
    {"direction": "in", "proto": "tcp", "ports": 2222, "peer": "10.155.10.0/24"},
    {"direction": "in", "proto": "tcp", "ports": 81, "guest": B},
]
SESSION_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(4)
for line in sys.stdin:
    try:
        s.sendall(line.encode()); print("ECHO", s.recv(100).decode().strip(), flush=True)
    except OSError as e:
        print("CUT", type(e).__name__, flush=True)
"""


def spec(rules: list[dict[str, Any]] | None = None, antispoof: bool = False,
         firewalls: bool = True) -> dict[str, Any]:
    nic_a = {"network": NET, "mac": MACS[A], "ipv4": IP_A}
    nic_b = {"network": NET, "mac": MACS[B], "ipv4": IP_B}
    if firewalls:
        nic_a["firewalls"] = [SET]
    if antispoof:
        nic_b["antispoof"] = True
    d: dict[str, Any] = {
        "networks": {NET: {"mode": "route", "bridge": "kvtf-br0", "ipv4": {
            "address": "10.155.1.1/24", "dhcp": "10.155.1.100-10.155.1.200"}}},
        "guests": {A: {"interfaces": [nic_a]}, B: {"interfaces": [nic_b]}}}
    if firewalls:
        d["firewalls"] = {SET: {"default_in": "drop", "rules": RULES if rules is None
                                else rules}}
    return d


class Fw:
    def __init__(self, lv: Libvirtd, workdir: Path) -> None:
        self.lv, self.workdir = lv, workdir
        self.conn = lv.open()
        self.logs: dict[str, Path] = {}
        self.before: dict[str, Any] = {}
        self.others: list[str] = []

    def write(self, name: str, d: dict[str, Any]) -> Path:
        """One owner for every file this test writes (a spec's default owner is its
        file's path: plan.yaml and apply.yaml would be two owners)."""
        p = self.workdir / name
        p.write_text(yaml.safe_dump({"owner": "kvt-fw", **d}, sort_keys=False))
        return p

    def args(self) -> list[str]:
        return ["-c", self.lv.uri, "--netns", self.lv.netns, "--scope", f"{PREFIX}*"]

    def plan(self, d: dict[str, Any]) -> dict[str, Any]:
        p = kvmnet("plan", str(self.write("plan.yaml", d)), *self.args(), "--json")
        assert p.returncode == 0, describe(p)
        return json.loads(p.stdout)

    def apply(self, d: dict[str, Any]) -> list[tuple[str, str]]:
        p = kvmnet("apply", str(self.write("apply.yaml", d)), *self.args(), "--yes", "--json")
        assert p.returncode == 0, describe(p)
        res = json.loads(p.stdout)
        assert res["ok"], describe(p)
        return [(r["kind"], r["target"]) for r in res["results"]]

    def guest(self, g: str, cmd: str, timeout: float = 20) -> tuple[int, str]:
        from lab.guest import run_url

        ip = IP_A if g == A else IP_B
        got = http_get(self.lv.netns, run_url(ip, cmd), timeout)
        assert got.returncode == 0, f"cannot drive {g}: {got.stderr}"
        out, _, rc = got.stdout.rstrip("\n").rpartition("KVMNET-RC ")
        return int(rc), out

    def boot(self, *guests: str) -> None:
        for g in guests:
            self.logs[g] = serial_log_path(g)
            self.conn.lookupByName(g).create()
        for g in guests:
            try:
                wait_for_serial(self.logs[g], r"KVMNET-LEASE (\S+) \S+ eth0", 150,
                                alive=self.conn.lookupByName(g).isActive)
            except TimeoutError:
                print(self.dump())
                raise
        if A in guests:  # the ports the rules talk about (80 is the lab guest's own httpd)
            rc, out = self.guest(A, "httpd -p 22 -h /www && httpd -p 81 -h /www && "
                                    "(nc -ll -p 2222 -e cat </dev/null >/dev/null 2>&1 &)")
            assert rc == 0, out


    def dump(self) -> str:
        """The lab namespace's iptables, ip6tables and ebtables rules with counters."""
        out = []
        for cmd in (["iptables-save", "-c"], ["ip6tables-save", "-c"],
                    ["ebtables", "-t", "nat", "-L", "--Lc"]):
            r = ns_exec(self.lv.netns, cmd)
            out.append(f"== {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        return "\n".join(out)


def reach(ns: str, port: int) -> bool:
    return http_get(ns, f"http://{IP_A}:{port}/", 3).returncode == 0


def b_reaches_81(fw: Fw) -> bool:
    rc, out = fw.guest(B, f"timeout 5 wget -q -O - http://{IP_A}:81/")
    return rc == 0 and f"KVMNET-GUEST {A}" in out


def pings(ns: str, ip: str = IP_A) -> bool:
    return ns_exec(ns, ["busybox", "ping", "-c", "1", "-W", "2", ip]).returncode == 0


def _cleanup(conn: Any, lab: str) -> None:
    with quiet_libvirt():
        remove_objects(conn, PREFIX)
        for f in conn.listAllNWFilters():
            if f.name().startswith(f"kvmnet-set-{PREFIX}"):
                f.undefine()
        for f in conn.listAllNWFilters():  # combinations of our sets (no one else's), and
            xml = f.XMLDesc(0)             # anti-spoofing alone, unless a NIC names it
            if f.name().startswith("kvmnet-nic-") and (
                    f"kvmnet-set-{PREFIX}" in xml or "kvmnet-set-" not in xml):
                try:
                    f.undefine()
                except libvirt.libvirtError:
                    pass
    for ns in (LAN1, LAN2):
        if ns in pr_netns.listnetns():
            for pid in pids_in_netns(ns):
                terminate(pid)
            pr_netns.remove(ns)
    if lab in pr_netns.listnetns():
        with iproute(lab) as ipr:
            for name, _, _ in LINKS:
                for idx in ipr.link_lookup(ifname=name):
                    ipr.link("del", index=idx)


def _lans(lab: str) -> None:
    for host_if, ns, net in LINKS:
        pr_netns.create(ns)
        with iproute(lab) as ipr:
            ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": "lan0", "net_ns_fd": ns})
            idx = ipr.link_lookup(ifname=host_if)[0]
            ipr.addr("add", index=idx, address=f"{net}.1", prefixlen=24)
            ipr.link("set", index=idx, state="up")
        with iproute(ns) as ipr:
            for name in ("lo", "lan0"):
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
            idx = ipr.link_lookup(ifname="lan0")[0]
            ipr.addr("add", index=idx, address=f"{net}.2", prefixlen=24)
            ipr.route("add", dst="0.0.0.0/0", gateway=f"{net}.1")
    # lan1 counts what arrives from each guest address (anti-spoofing, seen there)
    nft = ("table ip kvtfw {\n  chain inp { type filter hook input priority 0; "
           f"ip saddr {SPOOF} counter; ip saddr {IP_B} counter; }}\n}}\n")
    r = subprocess.run(["ip", "netns", "exec", LAN1, "nft", "-f", "-"], input=nft, text=True,
                       capture_output=True, check=False)
    assert r.returncode == 0, r.stderr


def arrived(src: str) -> int:
    rs = json.loads(ns_exec(LAN1, ["nft", "-j", "list", "table", "ip", "kvtfw"]).stdout)
    for item in rs["nftables"]:
        r = item.get("rule")
        if r and src in json.dumps(r["expr"]):
            return int(next(e["counter"]["packets"] for e in r["expr"] if "counter" in e))
    raise AssertionError(f"no counter for {src}")


@pytest.fixture(scope="module")
def fw(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fw]:
    w = Fw(libvirtd, tmp_path_factory.mktemp("fw"))
    lab = libvirtd.netns
    _cleanup(w.conn, lab)
    try:
        _lans(lab)
        w.apply(spec(firewalls=False))           # the network, before anything of ours
        kernel, initrd = guest_files()
        for g in (A, B):
            w.conn.defineXML(domain_xml(g, kernel, initrd, [], serial_log_path(g)))
        w.others = other_networks(w)              # type: ignore[arg-type]
        w.before = ruleset(lab)
        yield w
    finally:
        _cleanup(w.conn, lab)
        w.conn.close()


@pytest.mark.e2e
def test_rules_let_in_what_they_name_and_nothing_else(fw: Fw) -> None:
    plan = fw.plan(spec())
    kinds = [(a["kind"], a["target"]) for a in plan["actions"]]
    assert kinds[:2] == [("nwfilter.define", f"nwfilter/kvmnet-set-{SET}"),
                         ("nwfilter.define", kinds[1][1])], kinds
    fw.apply(spec())
    fw.boot(A, B)          # both lease through DHCP: a's through its default-drop set
    assert reach(LAN1, 22) and not reach(LAN1, 80), "lan1: 22 yes, 80 no"
    assert not reach(LAN2, 22), "lan2 reaches 22"
    assert pings(LAN1) and not pings(LAN2)
    assert b_reaches_81(fw)                                 # b: the peer rule's guest
    assert not reach(LAN1, 81)                              # lan1: not that guest
    assert http_get(fw.lv.netns, f"http://{IP_A}:81/", 3).returncode != 0  # nor the host
    assert fw.plan(spec())["actions"] == []                 # and nothing left to do
    show = kvmnet("show", "-c", fw.lv.uri, "--json")
    nics = {n["mac"]: n for n in json.loads(show.stdout)["interfaces"]}
    assert nics[MACS[A]]["firewalls"] == [SET] and not nics[MACS[B]]["firewalls"]


@pytest.mark.e2e
def test_import_gives_back_the_sets(fw: Fw) -> None:
    got = kvmnet("import", "-c", fw.lv.uri, NET)
    assert got.returncode == 0, describe(got)
    imported = yaml.safe_load(got.stdout)
    assert list(imported["firewalls"]) == [SET]
    assert imported["guests"][A]["interfaces"][0]["firewalls"] == [SET]
    assert fw.plan(imported)["actions"] == []


@pytest.mark.e2e
def test_a_rule_change_keeps_an_allowed_session_and_cuts_a_removed_one(fw: Fw) -> None:
    dom_id = fw.conn.lookupByName(A).ID()
    client = subprocess.Popen(
        ["ip", "netns", "exec", LAN1, sys.executable, "-c", SESSION_CLIENT, IP_A, "2222"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    assert client.stdin is not None and client.stdout is not None

    def say(word: str) -> str:
        client.stdin.write(word + "\n")  # type: ignore[union-attr]
        return client.stdout.readline().strip()  # type: ignore[union-attr]

    try:
        assert say("one") == "ECHO one"
        no_icmp = [r for r in RULES if r["proto"] != "icmp"]
        done = fw.apply(spec(no_icmp))
        assert done == [("nwfilter.redefine", f"nwfilter/kvmnet-set-{SET}")]
        assert not pings(LAN1), "the icmp rule is gone, lan1 still pings"
        assert say("two") == "ECHO two"           # its own rule stayed: the session too
        fw.apply(spec([r for r in no_icmp if r.get("ports") != 2222]))
        assert say("three").startswith("CUT")     # its rule went: so did the session
        assert reach(LAN1, 22)
    finally:
        client.kill()
        client.wait(5)
    assert fw.conn.lookupByName(A).ID() == dom_id  # the guest ran on throughout
    fw.apply(spec([r for r in RULES if r.get("ports") != 81]))
    assert not b_reaches_81(fw), "b reaches a without its peer rule"
    fw.apply(spec())
    assert pings(LAN1) and b_reaches_81(fw)


@pytest.mark.e2e
def test_antispoof_drops_a_second_address_and_passes_its_own(fw: Fw) -> None:
    rc, out = fw.guest(B, f"ip addr add {SPOOF}/24 dev eth0")
    assert rc == 0, out

    def sent(src: str) -> int:
        before = arrived(src)
        fw.guest(B, f"ping -c 3 -W 1 -I {src} {LAN1_IP}")
        return arrived(src) - before

    assert sent(SPOOF) == 3                       # without anti-spoofing it passes
    done = fw.apply(spec(antispoof=True))
    assert ("nic.update", f"guest/{B}/{MACS[B]}") in done
    assert sent(SPOOF) == 0, "the spoofed address reached lan1"
    assert sent(IP_B) == 3, "b's own address did not reach lan1"
    # DHCP behind anti-spoofing: a new lease (in the background: the udhcpc script
    # flushes eth0 first, which the request that runs it goes through)
    leases = fw.logs[B].read_text().count(f"KVMNET-LEASE {IP_B} ")
    fw.guest(B, "(udhcpc -i eth0 -n -q -t 5 -T 1 -s /etc/udhcpc.script "
                ">/dev/null 2>&1 </dev/null &)")
    wait_for_serial(fw.logs[B], rf"(?s)(KVMNET-LEASE {re.escape(IP_B)} .*?){{{leases + 1}}}",
                    30)
    assert fw.plan(spec(antispoof=True))["actions"] == []


@pytest.mark.e2e
def test_rules_survive_a_guest_restart_and_a_libvirtd_restart(fw: Fw) -> None:
    fw.conn.lookupByName(A).destroy()
    fw.boot(A)
    assert reach(LAN1, 22) and not reach(LAN2, 22) and not reach(LAN1, 80)
    why = restart_lab_libvirtd(fw.lv)
    if why:
        pytest.skip(f"not restarting the shared lab libvirtd: {why}")
    with quiet_libvirt():
        try:
            fw.conn.close()
        except libvirt.libvirtError:
            pass
    fw.conn = fw.lv.open()
    assert reach(LAN1, 22) and not reach(LAN2, 22) and not reach(LAN1, 80)
    assert fw.plan(spec(antispoof=True))["actions"] == []


@pytest.mark.e2e
def test_removal_leaves_the_firewall_as_it_was(fw: Fw) -> None:
    done = fw.apply(spec(firewalls=False))
    assert [k for k, _ in done].count("nwfilter.remove") == 3, done
    assert reach(LAN2, 80)                        # nothing filters a any more
    names = [f.name() for f in fw.conn.listAllNWFilters()]
    assert not [n for n in names if n.startswith("kvmnet-")], names
    ours = ('"kvtf-br0"', "10.155.1.")   # other_networks counts ours too (not kvt-e2e-)
    drop = tuple((set(fw.others) | set(other_networks(fw))) - set(ours))  # type: ignore[arg-type]
    before, after = normalized(fw.before, drop), normalized(ruleset(fw.lv.netns), drop)
    assert not before - after, diff(before, after)         # nothing of before is gone
    new = after - before                                    # and only libvirt's own
    assert all(libvirt_base(json.loads(x)) for x in new), diff(before, after)


BASE_CHAINS = ("libvirt-in", "libvirt-out", "libvirt-in-post", "libvirt-host-in")


def libvirt_base(item: dict[str, Any]) -> bool:
    """libvirt's nwfilter base chains, made the first time a filter is instantiated in a
    namespace and kept, empty, after the last goes (nwfilter_ebiptables_driver.c:
    iptablesCreateBaseChainsFW; ebtables-nft's table bridge nat with its base chains):
    libvirt's, not kvmnet's, and the same whoever instantiated a filter. Where libvirt's
    network driver uses nftables (Debian 13's second leg) nothing made iptables-nft's
    tables ip/ip6 filter before, so nwfilter's iptables calls make them and their hooked
    INPUT/FORWARD chains too; what those chains hold is checked rule by rule below."""
    if "table" in item:
        t = item["table"]
        return (t["family"], t["name"]) in (("bridge", "nat"), ("ip", "filter"),
                                            ("ip6", "filter"))
    if "chain" in item:
        c = item["chain"]
        return (c["name"] in BASE_CHAINS or c["family"] == "bridge" and c["table"] == "nat"
                and c["name"] in ("PREROUTING", "POSTROUTING", "OUTPUT")
                or c["family"] in ("ip", "ip6") and c["table"] == "filter"
                and c["name"] in ("INPUT", "FORWARD"))
    r = item.get("rule", {})
    jumps = [e["jump"]["target"] for e in r.get("expr", ()) if "jump" in e]
    return r.get("chain") in ("FORWARD", "INPUT") and jumps in ([c] for c in BASE_CHAINS)
