"""Port forwards (issue 6) against real kernels, a real libvirt 9.0 and libvirt 11.3's
nftables rules; the guests are network namespaces on the network's bridge, each
serving tests/e2e/peer_server.py on port 80 (it answers the client address it saw).

    kvt-fwPID-out 192.0.2.254 --veth-- kvtfw-up 192.0.2.1  kvt-fwPID-host  kvtfw-nat0 10.232.10.1/24
                                                         |- kvtfw-g1: kvt-fwPID-g1 10.232.10.10
                                                         |- kvtfw-g2: kvt-fwPID-g2 10.232.10.11

iptables backend: a libvirtd of this test's own, in namespace kvt-fwPID-host and a private
mount namespace whose /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt
are folders under the test's --root. It is not the shared lab libvirtd, so it can be
restarted at will, and it runs the hook kvmnet writes under --root (libvirt's
/etc/libvirt/hooks/network.d/) when a network starts: the full life cycle is real
(apply, network restart, daemon restart, rules lost and put back by the hook, removal).

nftables backend (libvirt 10+; not installable here): namespaces kvt-fwPID-n* with a
plain bridge and exactly the rules libvirt 11.3 writes for a NAT network (its own test
data from Debian trixie's libvirt source package, fetched by ./scripts/setup, replayed),
then kvmnet's live code and hook on top.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from pyroute2 import netns as pr_netns

from kvmnet.backend.firewall import sync
from kvmnet.backend.forward_files import HOOK_FILE, LOG_FILE, STATE_FILE
from kvmnet.backend.host import set_master
from kvmnet.model.spec import Spec
from kvmnet.render.firewall import resolve
from lab.firewall import (
    diff,
    drop_kvmnet_rules,
    exact,
    kvmnet_items,
    normalized,
    ns_run,
    replay,
    ruleset,
    wget,
)
from lab.libvirtd import LIBVIRTD, pids_in_netns, proc_alive, read_pidfile, terminate
from lab.testdata import firewall_file

pytestmark = [
    pytest.mark.libvirtd,
    pytest.mark.skipif(os.geteuid() != 0 or not os.access(LIBVIRTD, os.X_OK)
                       or not shutil.which("nft") or not shutil.which("unshare"),
                       reason="needs root, libvirtd, nft and unshare"),
]

KVMNET = str(Path(sys.executable).parent / "kvmnet")
PEER_SERVER = Path(__file__).parents[1] / "e2e" / "peer_server.py"
NET = "kvt-fw-nat"
BRIDGE = "kvtfw-nat0"
HOST_UP, OUT_UP = "192.0.2.1", "192.0.2.254"
G1_IP, G2_IP, GW = "10.232.10.10", "10.232.10.11", "10.232.10.1"
PRIVATE_DIRS = ("etc/libvirt", "run/libvirt", "var/lib/libvirt", "var/log/libvirt",
                "var/cache/libvirt")

NETWORK = {"mode": "nat", "bridge": BRIDGE,
           "ipv4": {"address": f"{GW}/24", "dhcp": "10.232.10.100-10.232.10.199"}}
FORWARDS = [
    {"proto": "tcp", "host_port": 8080, "address": G1_IP, "guest_port": 80},
    {"proto": "tcp", "host_port": "9000-9001", "address": G2_IP, "guest_port": "80-81"},
    {"proto": "tcp", "host_port": 8443, "address": G2_IP, "guest_port": 80,
     "sources": ["192.0.2.0/28"]},          # the outside (.254) is not in it
    {"proto": "tcp", "host_port": 8081, "address": G1_IP, "guest_port": 80,
     "listen": HOST_UP},                     # only on the uplink address
]


def spec(forwards: list[dict[str, Any]]) -> dict[str, Any]:
    net = dict(NETWORK, forwards=forwards) if forwards else dict(NETWORK)
    # one owner for net.yaml, fwd.yaml, one.yaml and none.yaml (a spec's default owner
    # is its file's path)
    return {"owner": "kvt-fwd", "networks": {NET: net}}


@dataclass(frozen=True)
class Topo:
    host: str
    out: str
    g1: str
    g2: str
    bridge: str

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.host, self.out, self.g1, self.g2)


def remove_namespaces(names: tuple[str, ...]) -> None:
    """By name: end every process in them (all ours: servers, libvirtd, dnsmasq) first."""
    for ns in names:
        if ns in pr_netns.listnetns():
            for pid in pids_in_netns(ns):
                if proc_alive(pid):
                    terminate(pid)
            pr_netns.remove(ns)


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"ip {shlex.join(args)}: {r.stderr}"


def build(t: Topo) -> list[subprocess.Popen[str]]:
    """Namespaces, uplink, the two guests' veths (host ends not in a bridge yet), their
    peer servers; the host forwards IPv4."""
    for ns in t.namespaces:
        pr_netns.create(ns)
        ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", t.host, "link", "add", "kvtfw-up", "type", "veth", "peer", "name", "up0", "netns",
       t.out)
    ip("-n", t.host, "addr", "add", f"{HOST_UP}/24", "dev", "kvtfw-up")
    ip("-n", t.host, "link", "set", "kvtfw-up", "up")
    ip("-n", t.out, "addr", "add", f"{OUT_UP}/24", "dev", "up0")
    ip("-n", t.out, "link", "set", "up0", "up")
    ip("-n", t.host, "route", "add", "default", "via", OUT_UP)
    assert ns_run(t.host, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]).returncode == 0
    procs = []
    for ns, addr, port in ((t.g1, G1_IP, "kvtfw-g1"), (t.g2, G2_IP, "kvtfw-g2")):
        ip("-n", t.host, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "route", "add", "default", "via", GW)
    # g2 also answers on 81: the range 9000-9001 reaches its ports 80-81, one to one
    servers = ((t.g1, G1_IP, 80), (t.g2, G2_IP, 80), (t.g2, G2_IP, 81))
    for ns, _addr, sport in servers:
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(PEER_SERVER), str(sport),
             os.devnull],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 15
    for ns, addr, sport in servers:
        while wget(ns, f"http://{addr}:{sport}/ready", 1)[0] != 0:
            assert time.monotonic() < deadline, f"peer server in {ns} does not answer"
            time.sleep(0.1)
    return procs


def plug(t: Topo) -> None:
    """Put the guests' host ends into the bridge: after (re)creating it, as apply's
    reconnect does for taps (kvmnet.backend.host.set_master)."""
    for port in ("kvtfw-g1", "kvtfw-g2"):
        set_master(port, t.bridge, t.host)
    deadline = time.monotonic() + 20     # the bridge's STP takes a moment to forward
    for addr in (G1_IP, G2_IP):
        while wget(t.host, f"http://{addr}/plugged", 1)[0] != 0:
            assert time.monotonic() < deadline, f"{addr} is not reachable on {t.bridge}"
            time.sleep(0.2)


def get(ns: str, host: str, port: int, path: str) -> str:
    """The body of http://host:port/path from ns, or 'FAILED: <wget's error>'."""
    rc, body, errtext = wget(ns, f"http://{host}:{port}{path}", 3)
    return body.strip() if rc == 0 else f"FAILED: {errtext.strip().splitlines()[-1:]}"


def reaches_everything(t: Topo) -> None:
    """(a) outside via the host's address, (b) the host itself, (c) the other guest
    through the host's address (hairpin: it is masqueraded to the bridge address)."""
    assert get(t.out, HOST_UP, 8080, "/out") == f"PEER {OUT_UP} /out"
    assert get(t.host, HOST_UP, 8080, "/host") == f"PEER {HOST_UP} /host"
    assert get(t.g2, HOST_UP, 8080, "/g2") == f"PEER {GW} /g2"
    assert get(t.g1, HOST_UP, 9000, "/g1") == f"PEER {GW} /g1"        # range -> range: 80
    assert get(t.out, HOST_UP, 9001, "/range") == f"PEER {OUT_UP} /range"  # and 81


def reaches_nothing(t: Topo) -> None:
    for ns, host, port in ((t.out, HOST_UP, 8080), (t.host, HOST_UP, 8080),
                           (t.g2, HOST_UP, 8080), (t.out, HOST_UP, 9000)):
        got = get(ns, host, port, "/gone")
        assert got.startswith("FAILED"), f"{ns} -> {host}:{port} still works: {got}"


def restart_network(uri: str) -> None:
    """virsh net-destroy + net-start: libvirt makes the bridge and its rules anew (the
    guests' ports then need plug())."""
    conn = libvirt.open(uri)
    try:
        net = conn.networkLookupByName(NET)
        net.destroy()
        net.create()
    finally:
        conn.close()


# ------------------------------------------------------------ the private libvirtd

@dataclass
class PrivateLibvirtd:
    root: Path
    netns: str
    starts: int = field(default=0)

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.root}/run/libvirt/libvirt-sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "run/libvirtd.pid"

    def start(self) -> None:
        binds = []
        for d in PRIVATE_DIRS:
            if Path("/", d).is_dir():
                (self.root / d).mkdir(parents=True, exist_ok=True)
                binds.append(f"mount --bind {shlex.quote(str(self.root / d))} /{d}")
        script = " && ".join([*binds, f"exec {LIBVIRTD} --daemon --pid-file "
                                      f"{shlex.quote(str(self.pidfile))}"])
        r = subprocess.run(["ip", "netns", "exec", self.netns, "unshare", "--mount",
                            "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"private libvirtd did not start: {r.stdout}{r.stderr}"
        deadline = time.monotonic() + 30
        while True:   # answers once its drivers are up (tests/lab/libvirtd.py)
            try:
                conn = libvirt.open(self.uri)
                try:
                    conn.listAllNetworks()
                finally:
                    conn.close()
                break
            except libvirt.libvirtError:
                log = self.root / "var/log/libvirt/libvirtd.log"
                tail = log.read_text()[-2000:] if log.exists() else ""
                assert time.monotonic() < deadline, f"private libvirtd does not answer: {tail}"
                time.sleep(0.1)
        self.starts += 1

    def stop(self) -> None:
        pid = read_pidfile(self.pidfile)
        if pid is not None and proc_alive(pid):
            terminate(pid, timeout=30)

    def restart(self) -> None:
        self.stop()
        self.start()


def kvmnet(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KVMNET, *args, "-c", lab.lv.uri, "--netns", lab.topo.host],
                          capture_output=True, text=True, timeout=180)


@dataclass
class Lab:
    topo: Topo
    lv: PrivateLibvirtd
    workdir: Path
    before: Any = None          # the namespace's ruleset before any forward

    @property
    def root(self) -> Path:
        return self.lv.root

    def write(self, name: str, forwards: list[dict[str, Any]]) -> Path:
        path = self.workdir / name
        path.write_text(yaml.safe_dump(spec(forwards), sort_keys=False))
        return path

    def plan(self, path: Path) -> tuple[int, dict[str, Any]]:
        r = kvmnet(self, "plan", str(path), "--root", str(self.root), "--scope", "kvt-fw*",
                   "--json", "--detailed-exitcode")
        assert r.returncode in (0, 2), r.stdout + r.stderr
        return r.returncode, json.loads(r.stdout)

    def apply(self, path: Path) -> dict[str, Any]:
        r = kvmnet(self, "apply", str(path), "--root", str(self.root), "--scope", "kvt-fw*",
                   "--yes", "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["ok"], out
        return out


# Namespaces kvt-fw<PID>-*: test sessions share the machine (a private libvirtd, bridges
# and veths inside them do not clash); those of sessions that are gone are removed.
TAG = f"kvt-fw{os.getpid()}"
IPT = Topo(f"{TAG}-host", f"{TAG}-out", f"{TAG}-g1", f"{TAG}-g2", BRIDGE)
NFT = Topo(f"{TAG}-nhost", f"{TAG}-nout", f"{TAG}-ng1", f"{TAG}-ng2", "kvtfw-nbr0")


def remove_stale() -> None:
    for ns in pr_netns.listnetns():
        pid = ns.removeprefix("kvt-fw").partition("-")[0]
        if ns.startswith("kvt-fw") and pid.isdigit() and not proc_alive(int(pid)):
            remove_namespaces((ns,))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    remove_stale()
    work = tmp_path_factory.mktemp("fw")
    procs: list[subprocess.Popen[str]] = []
    lv = PrivateLibvirtd(work / "root", IPT.host)
    try:
        procs = build(IPT)
        lv.start()
        lab = Lab(IPT, lv, work)
        lab.apply(lab.write("net.yaml", []))       # the network alone, made by kvmnet
        plug(IPT)
        assert get(IPT.host, G1_IP, 80, "/direct") == f"PEER {GW} /direct"
        lab.before = ruleset(IPT.host)
        yield lab
    finally:
        for p in procs:
            p.terminate()
        try:
            conn = libvirt.open(lv.uri)
            for n in conn.listAllNetworks():
                if n.isActive():
                    n.destroy()
                n.undefine()
            conn.close()
        except libvirt.libvirtError:
            pass
        lv.stop()
        remove_namespaces(IPT.namespaces)


# ------------------------------------------------------------ iptables backend (libvirt 9.0)

def test_plan_shows_forwards_and_apply_installs_them(lab: Lab) -> None:
    path = lab.write("fwd.yaml", FORWARDS)
    rc, plan = lab.plan(path)
    assert rc == 2
    acts = [(a["kind"], a["target"], a["impact"]) for a in plan["actions"]]
    assert acts == [("firewall.sync", "firewall/forwards", "live")], plan
    details = plan["actions"][0]["details"]
    assert f"+ {NET} tcp 8080 -> {G1_IP}:80" in details, details
    assert any(d.startswith("+ libvirt network hook") for d in details), details
    reaches = get(lab.topo.out, HOST_UP, 8080, "/before")
    assert reaches.startswith("FAILED"), reaches
    result = lab.apply(path)
    assert [r["status"] for r in result["results"]] == ["done"], result
    assert "systemctl reload libvirtd" in result["results"][0]["message"]
    reaches_everything(lab.topo)
    # sources: the outside is not in 192.0.2.0/28; the host itself is not filtered
    assert get(lab.topo.out, HOST_UP, 8443, "/src").startswith("FAILED")
    assert get(lab.topo.host, HOST_UP, 8443, "/src") == f"PEER {HOST_UP} /src"
    # listen: only the uplink address, not the bridge address
    assert get(lab.topo.out, HOST_UP, 8081, "/l") == f"PEER {OUT_UP} /l"
    assert get(lab.topo.g2, GW, 8081, "/l").startswith("FAILED")
    # libvirt's reject still holds for everything kvmnet did not DNAT
    ip("-n", lab.topo.out, "route", "add", "10.232.10.0/24", "via", HOST_UP)
    try:
        rc2, _, errtext = wget(lab.topo.out, f"http://{G1_IP}/direct", 3)
        assert rc2 != 0 and "refused" in errtext.lower(), errtext
    finally:
        ip("-n", lab.topo.out, "route", "del", "10.232.10.0/24")
    # where the rules are: kvmnet's table, and its chain first in FORWARD
    save = ns_run(lab.topo.host, ["iptables", "-w", "-S", "FORWARD"]).stdout.splitlines()
    assert save[1] == "-A FORWARD -j KVMNET_FWD", save
    assert (lab.root / STATE_FILE).is_file() and os.access(lab.root / HOOK_FILE, os.X_OK)


def test_a_second_apply_changes_nothing(lab: Lab) -> None:
    path = lab.workdir / "fwd.yaml"
    before = ruleset(lab.topo.host)
    rc, plan = lab.plan(path)
    assert rc == 0 and not plan["actions"], plan
    result = lab.apply(path)
    assert result["results"] == [] and result["writes"] == 0, result
    # not even rewritten: the handles are the same
    assert exact(ruleset(lab.topo.host)) == exact(before)


def test_show_lists_forwards_with_their_state(lab: Lab) -> None:
    r = kvmnet(lab, "show", "--root", str(lab.root), "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["forwards"]
    assert [(x["host_port"], x["address"], x["state"]) for x in rows] == [
        ("8080", G1_IP, "installed"), ("9000-9001", G2_IP, "installed"),
        ("8443", G2_IP, "installed"), ("8081", G1_IP, "installed")]
    drop_kvmnet_rules(lab.topo.host)
    rows = json.loads(kvmnet(lab, "show", "--root", str(lab.root), "--json").stdout)["forwards"]
    assert {x["state"] for x in rows} == {"not installed"}
    rc, plan = lab.plan(lab.workdir / "fwd.yaml")
    assert rc == 2 and any(d.startswith("~ put back") for d in plan["actions"][0]["details"])
    lab.apply(lab.workdir / "fwd.yaml")
    reaches_everything(lab.topo)


def test_a_libvirtd_restart_keeps_them(lab: Lab) -> None:
    """libvirt re-adds its rules on start (at the top of LIBVIRT_FW*); kvmnet's jump
    stays first in FORWARD. (The restart also makes libvirtd find the new hook.)"""
    lab.lv.restart()
    reaches_everything(lab.topo)
    rc, plan = lab.plan(lab.workdir / "fwd.yaml")
    assert rc == 0, plan


def test_a_network_restart_keeps_them(lab: Lab) -> None:
    restart_network(lab.lv.uri)
    plug(lab.topo)
    reaches_everything(lab.topo)
    assert lab.plan(lab.workdir / "fwd.yaml")[0] == 0


def test_the_hook_puts_lost_rules_back_when_the_network_starts(lab: Lab) -> None:
    """A reboot (or a firewall reload) empties the ruleset; libvirt starts the network
    and runs network.d/kvmnet-forwards NET started begin -: the rules are back, from
    the state file alone (the spec file is gone)."""
    drop_kvmnet_rules(lab.topo.host)
    assert get(lab.topo.out, HOST_UP, 8080, "/lost").startswith("FAILED")
    log = lab.root / LOG_FILE
    before = log.read_text() if log.exists() else ""
    moved = lab.workdir / "fwd.yaml.away"
    (lab.workdir / "fwd.yaml").rename(moved)
    try:
        restart_network(lab.lv.uri)
    finally:
        moved.rename(lab.workdir / "fwd.yaml")
    plug(lab.topo)
    new = log.read_text()[len(before):]
    assert f"{NET} started: 4 forward(s): " in new, new
    reaches_everything(lab.topo)
    assert lab.plan(lab.workdir / "fwd.yaml")[0] == 0
    # a daemon restart after the hook's work changes nothing either
    lab.lv.restart()
    reaches_everything(lab.topo)
    assert lab.plan(lab.workdir / "fwd.yaml")[0] == 0


def test_changing_and_removing_forwards(lab: Lab) -> None:
    one = lab.write("one.yaml", FORWARDS[:1])
    rc, plan = lab.plan(one)
    assert rc == 2
    details = plan["actions"][0]["details"]
    assert sorted(d[0] for d in details) == ["-", "-", "-"], details
    lab.apply(one)
    assert get(lab.topo.out, HOST_UP, 8080, "/one") == f"PEER {OUT_UP} /one"
    assert get(lab.topo.out, HOST_UP, 9000, "/one").startswith("FAILED")
    none = lab.write("none.yaml", [])
    rc, plan = lab.plan(none)
    assert rc == 2 and plan["actions"][0]["kind"] == "firewall.sync"
    lab.apply(none)
    reaches_nothing(lab.topo)
    assert not kvmnet_items(ruleset(lab.topo.host))
    assert not (lab.root / STATE_FILE).exists() and not (lab.root / HOOK_FILE).exists()
    # nothing left behind: the whole ruleset is as it was before the first forward
    assert normalized(ruleset(lab.topo.host)) == normalized(lab.before), diff(
        normalized(lab.before), normalized(ruleset(lab.topo.host)))
    assert lab.plan(none)[0] == 0


# ------------------------------------------------------------ nftables backend (libvirt 11.3)

@pytest.fixture(scope="module")
def nft_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Topo, Path]]:
    t = NFT
    remove_stale()
    procs: list[subprocess.Popen[str]] = []
    try:
        procs = build(t)
        ip("-n", t.host, "link", "add", t.bridge, "type", "bridge")
        ip("-n", t.host, "addr", "add", f"{GW}/24", "dev", t.bridge)
        ip("-n", t.host, "link", "set", t.bridge, "up")
        plug(t)
        subst = {"virbr0": t.bridge, "192.168.122.": "10.232.10."}
        replay(t.host, firewall_file("base.nftables"), subst)
        replay(t.host, firewall_file("nat-default-linux.nftables"), subst)
        root = tmp_path_factory.mktemp("nftroot")
        (root / "etc/libvirt").mkdir(parents=True)   # libvirt's config folder: the hook's
        yield t, root
    finally:
        for p in procs:
            p.terminate()
        remove_namespaces(t.namespaces)


def test_nftables_backend_install_hook_and_removal(nft_lab: tuple[Topo, Path]) -> None:
    t, root = nft_lab
    fwds = resolve(Spec.model_validate(spec(FORWARDS)))
    before = ruleset(t.host)
    # libvirt 11.3's rules really reject what is not established (the outside, routed)
    reaches_nothing(t)
    msg = sync(fwds, t.host, root)
    assert "nft: table inet kvmnet" in msg and "iptables" not in msg, msg
    reaches_everything(t)
    items = kvmnet_items(ruleset(t.host))
    assert any('"chain": "kvmnet_forwards"' in i and '"table": "libvirt_network"' in i
               for i in items), items
    assert not any("KVMNET_FWD" in i for i in items), items
    # the jump is the first rule of libvirt's forward chain
    fwd = [i["rule"] for i in ruleset(t.host)["nftables"]
           if "rule" in i and i["rule"]["table"] == "libvirt_network"
           and i["rule"]["chain"] == "forward"]
    assert fwd[0]["expr"][-1] == {"jump": {"target": "kvmnet_forwards"}}, fwd
    assert sync(fwds, t.host, root).endswith("rules were in place")
    # what the hook does when libvirt starts the network: rules back from the state file
    drop_kvmnet_rules(t.host)
    reaches_nothing(t)
    r = ns_run(t.host, [str(root / HOOK_FILE), NET, "started", "begin", "-"],
               stdin="<hookData><network><name>kvt-fw-nat</name></network></hookData>")
    assert r.returncode == 0, r.stderr
    assert "started: 4 forward(s)" in (root / LOG_FILE).read_text()
    reaches_everything(t)
    # libvirt re-inserts its own jumps at the top (as after re-creating its table):
    # kvmnet's is no longer first and the plan/hook puts it back in front
    for chain in ("guest_output", "guest_input", "guest_cross"):
        assert ns_run(t.host, ["nft", "insert", "rule", "ip", "libvirt_network", "forward",
                               "counter", "jump", chain]).returncode == 0
    # (the host's own connections and the hairpin do not meet guest_input's reject)
    assert get(t.out, HOST_UP, 8080, "/late").startswith("FAILED")
    assert "nft: table inet kvmnet" in sync(fwds, t.host, root)
    reaches_everything(t)
    for chain in ("guest_output", "guest_input", "guest_cross"):   # undo the duplicates
        for item in ruleset(t.host)["nftables"]:
            rl = item.get("rule")
            if rl and rl["chain"] == "forward" and rl["expr"][-1] == {"jump": {"target": chain}}:
                ns_run(t.host, ["nft", "delete", "rule", "ip", "libvirt_network", "forward",
                                "handle", str(rl["handle"])])
                break
    assert "removed table inet kvmnet" in sync((), t.host, root)
    reaches_nothing(t)
    assert normalized(ruleset(t.host)) == normalized(before), diff(
        normalized(before), normalized(ruleset(t.host)))
    assert not (root / HOOK_FILE).exists() and not (root / STATE_FILE).exists()
