"""DNS and names (issue 22), with real guests on a network `kvmnet apply` made:

- the host finds guests by name through libvirt's NSS module: `getent hosts` answers
  the reserved guest's address by its name and the pool guest's by the host name it
  gave DHCP (not its libvirt name), with the nsswitch.conf kvmnet apply wrote under
  --root bind-mounted over /etc/nsswitch.conf in a mount namespace of the test's own
  (the host's own file is never touched). The lab's libvirtd runs in a network
  namespace but keeps its state in the host's /run/libvirt and /var/lib/libvirt, so
  the module reads the lab's leases: that is what this checks;
- a guest resolves (busybox nslookup, against the network's dnsmasq) an SRV record, a
  TXT record, a wildcard name, an alias, the PTR record of its reservation, and an
  outside name through a forwarder: dnsmasq in namespace kvt-dn-inet ("the
  internet"), whose two servers log every query they get. The per-domain forwarder's
  server sees only names of its domain; a local-only domain reaches neither;
- a live DNS change (a DNS host) is answered by the running dnsmasq (same pid); TXT
  and SRV changes are live too (libvirt restarts its dnsmasq for those, the network
  and its bridge stay);
- removing the records removes the answers.

Everything is named kvt-dn-* (bridges, veths kvtdn*), in 10.156.0.0/16, and removed by
name before and after.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyroute2 import netns as pr_netns

from kvmnet.backend.names import nss_module
from lab.guest import run_url, start_guest, wait_for_serial
from lab.libvirtd import (
    URI,
    Libvirtd,
    iproute,
    pids_in_netns,
    proc_alive,
    quiet_libvirt,
    read_pidfile,
    remove_objects,
    terminate,
)

pytestmark = pytest.mark.e2e

PREFIX = "kvt-dn-"
NET = "kvt-dn-net"
BRIDGE = "kvtdn-br0"
NS_INET = "kvt-dn-inet"
UPLINK = "kvtdn-up0"            # in the lab namespace; its peer "up0" is in kvt-dn-inet
UPLINK_HOST = "10.156.250.1"
UPSTREAM = "10.156.250.254"     # the general upstream server
CORP = "10.156.250.253"         # the server for corp.example only
GATEWAY = "10.156.1.1"
WEB, POOL = "kvt-dn-web1", "kvt-dn-pool1"
WEB_MAC, WEB_IP = "52:54:00:9c:01:10", "10.156.1.10"
POOL_MAC = "52:54:00:9c:01:20"
POOL_HOSTNAME = "dnpool"        # the host name the pool guest gives DHCP
RUN = Path("/run/kvt-dn")
KVMNET = str(Path(sys.executable).parent / "kvmnet")
LEASE_RE = r"KVMNET-LEASE (\S+) (\S+) eth0"

DNS: dict[str, Any] = {
    "forwarders": [UPSTREAM, {"domain": "corp.example", "addr": CORP},
                   {"domain": "quiet.test", "addr": "none"}],
    "srv": [{"service": "http", "protocol": "tcp", "domain": "dn.test",
             "target": f"{WEB}.dn.test", "port": 80, "priority": 10, "weight": 5}],
    "txt": [{"name": "info.dn.test", "value": "kvmnet-dns-e2e"}],
    "wildcards": [{"domain": "apps.dn.test", "ip": "10.156.1.77"}],
    "cnames": [{"name": "www.dn.test", "target": f"{WEB}.dn.test"}],
    "ptr": True,
}


def spec(dns: dict[str, Any]) -> dict[str, Any]:
    return {
        "host": {"resolve_guests": True},
        "networks": {NET: {
            "mode": "nat", "bridge": BRIDGE, "domain": "dn.test",
            "ipv4": {"address": f"{GATEWAY}/24", "dhcp": "10.156.1.100-10.156.1.149",
                     "hosts": [{"mac": WEB_MAC, "name": WEB, "ip": WEB_IP}]},
            "dns": dns}}}


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


class Lab:
    def __init__(self, lv: Libvirtd, conn: Any, workdir: Path) -> None:
        self.lv, self.conn, self.workdir = lv, conn, workdir
        self.root = workdir / "root"
        self.ips: dict[str, str] = {}

    def kvmnet(self, verb: str, data: dict[str, Any], *extra: str) -> Any:
        path = self.workdir / "spec.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        proc = run([KVMNET, verb, str(path), "-c", URI, "--netns", self.lv.netns, "--scope",
                    f"{PREFIX}*", "--root", str(self.root), "--json", *extra], 180)
        assert proc.returncode in (0, 2), f"{proc.args}\n{proc.stdout}\n{proc.stderr}"
        return yaml.safe_load(proc.stdout)

    def guest(self, command: str) -> str:
        """Run COMMAND in the reserved guest; its output (and exit code line)."""
        got = run(["ip", "netns", "exec", self.lv.netns, "wget", "--no-proxy", "-q", "-t", "1",
                   "-T", "20", "-O", "-", run_url(WEB_IP, command)], 40)
        assert got.returncode == 0, f"cannot drive {WEB}: {got.stderr}"
        return got.stdout

    def wait_guest(self, timeout: float = 60) -> float:
        """Seconds until the reserved guest answers again (after a network restart,
        kvmnet puts its tap back into the new bridge)."""
        t0 = time.monotonic()
        while run(["ip", "netns", "exec", self.lv.netns, "wget", "--no-proxy", "-q", "-t",
                   "1", "-T", "2", "-O", "/dev/null", f"http://{WEB_IP}/"], 10).returncode:
            assert time.monotonic() - t0 < timeout, f"{WEB} does not answer after {timeout}s"
            time.sleep(0.5)
        return time.monotonic() - t0

    def lookup(self, name: str, qtype: str = "a") -> str:
        return self.guest(f"timeout 5 nslookup -type={qtype} {name} {GATEWAY}")

    def dnsmasq_pid(self) -> int | None:
        return read_pidfile(Path(f"/run/libvirt/network/{NET}.pid"))


def cleanup(conn: Any, lab: str) -> None:
    with quiet_libvirt():
        remove_objects(conn, PREFIX)
    if NS_INET in pr_netns.listnetns():
        for pid in pids_in_netns(NS_INET):   # only ever ours: the upstream dnsmasqs
            if proc_alive(pid):
                terminate(pid)
        pr_netns.remove(NS_INET)
    with iproute(lab) as ipr:
        for idx in ipr.link_lookup(ifname=UPLINK):
            ipr.link("del", index=idx)
    shutil.rmtree(RUN, ignore_errors=True)


def upstream(addr: str, name: str, answers: dict[str, str]) -> subprocess.Popen[str]:
    """A DNS server in "the internet" at ADDR: answers each domain of ANSWERS with its
    address, logs every query to RUN/NAME.log."""
    args = ["ip", "netns", "exec", NS_INET, "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts", f"--listen-address={addr}", "--bind-interfaces",
            "--user=root", "--log-queries", f"--log-facility={RUN / name}.log",
            f"--pid-file={RUN / name}.pid"]
    args += [f"--address=/{d}/{ip}" for d, ip in answers.items()]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)


def make_inet(lab: str) -> list[subprocess.Popen[str]]:
    pr_netns.create(NS_INET)
    with iproute(lab) as ipr:
        ipr.link("add", ifname=UPLINK, kind="veth", peer={"ifname": "up0", "net_ns_fd": NS_INET})
        idx = ipr.link_lookup(ifname=UPLINK)[0]
        ipr.addr("add", index=idx, address=UPLINK_HOST, prefixlen=24)
        ipr.link("set", index=idx, state="up")
    with iproute(NS_INET) as ipr:
        for n in ("lo", "up0"):
            ipr.link("set", index=ipr.link_lookup(ifname=n)[0], state="up")
        idx = ipr.link_lookup(ifname="up0")[0]
        for a in (UPSTREAM, CORP):
            ipr.addr("add", index=idx, address=a, prefixlen=24)
    RUN.mkdir(parents=True, exist_ok=True)
    procs = [upstream(UPSTREAM, "upstream", {"outside.example": "203.0.113.77",
                                             "corp.example": "203.0.113.99",
                                             "quiet.test": "203.0.113.66"}),
             upstream(CORP, "corp", {"corp.example": "203.0.113.78"})]
    deadline = time.monotonic() + 15
    while not all((RUN / f"{n}.log").exists() and "started" in (RUN / f"{n}.log").read_text()
                  for n in ("upstream", "corp")):
        assert time.monotonic() < deadline, "the upstream DNS servers did not start"
        assert all(p.poll() is None for p in procs), "an upstream DNS server stopped"
        time.sleep(0.1)
    return procs


@pytest.fixture(scope="module")
def dn(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    conn = libvirtd.open()
    lab = Lab(libvirtd, conn, tmp_path_factory.mktemp("dns"))
    procs: list[subprocess.Popen[str]] = []
    try:
        cleanup(conn, libvirtd.netns)
        procs = make_inet(libvirtd.netns)
        lab.root.joinpath("etc").mkdir(parents=True)
        # the root mirrors the host's NSS module (apply looks for it under --root)
        module = nss_module(Path("/"))
        assert module, "libvirt's NSS module is not installed: apt-get install libnss-libvirt"
        lab.root.joinpath(module[1:]).parent.mkdir(parents=True)
        lab.root.joinpath(module[1:]).symlink_to(module)
        lab.root.joinpath("etc/nsswitch.conf").write_text(
            "passwd:         files\nhosts:          files dns\nnetworks:       files\n")
        result = lab.kvmnet("apply", spec(DNS), "--yes")
        assert result["ok"], result
        logs = {}
        for name, mac, extra in ((WEB, WEB_MAC, ""), (POOL, POOL_MAC,
                                                      f"kvmnet.name={POOL_HOSTNAME}")):
            _, logs[name] = start_guest(conn, name, [{"network": NET, "mac": mac}],
                                        extra_cmdline=extra)
        for name, log in logs.items():
            lab.ips[name] = wait_for_serial(log, LEASE_RE, 150).group(1)
        yield lab
    finally:
        for p in procs:
            if p.poll() is None:
                terminate(p.pid)
        cleanup(conn, libvirtd.netns)
        conn.close()


def getent(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    """`getent hosts NAME` with ROOT/etc/nsswitch.conf as /etc/nsswitch.conf, in a mount
    namespace of its own (sh -c with positional parameters: nothing interpolated)."""
    return run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /etc/nsswitch.conf && exec getent hosts "$2"', "sh",
                str(root / "etc/nsswitch.conf"), name])


def test_the_host_finds_guests_by_name(dn: Lab) -> None:
    conf = (dn.root / "etc/nsswitch.conf").read_text()
    assert "hosts:          files libvirt libvirt_guest dns" in conf, conf
    assert (dn.root / "etc/nsswitch.conf.kvmnet-bak").read_text().count("files dns") == 1
    assert dn.ips[WEB] == WEB_IP
    got = getent(dn.root, WEB)                        # the reservation, by its name
    assert got.returncode == 0 and got.stdout.split()[:2] == [WEB_IP, WEB], got
    got = getent(dn.root, POOL_HOSTNAME)              # the pool lease, by its DHCP name
    assert got.returncode == 0 and got.stdout.split()[0] == dn.ips[POOL], got
    got = getent(dn.root, POOL)                       # libvirt_guest: by domain name
    assert got.returncode == 0 and got.stdout.split()[0] == dn.ips[POOL], got
    # without the module (the file as it was), the same name is not found
    plain = dn.workdir / "plain"
    (plain / "etc").mkdir(parents=True)
    (plain / "etc/nsswitch.conf").write_text("hosts: files\n")
    assert getent(plain, POOL_HOSTNAME).returncode == 2
    # a second plan has nothing to do: the file holds what the spec asks
    assert dn.kvmnet("plan", spec(DNS))["changes"] is False


def test_a_guest_resolves_the_networks_records(dn: Lab) -> None:
    out = dn.lookup("_http._tcp.dn.test", "srv")
    assert f"{WEB}.dn.test" in out and " 80 " in f" {out} ".replace(":", " "), out
    out = dn.lookup("info.dn.test", "txt")
    assert "kvmnet-dns-e2e" in out, out
    out = dn.lookup("anything.apps.dn.test")
    assert "10.156.1.77" in out, out
    out = dn.lookup("www.dn.test")
    assert WEB_IP in out, out
    out = dn.guest(f"timeout 5 nslookup {WEB_IP} {GATEWAY}")
    assert f"{WEB}.dn.test" in out, out


def _log(name: str) -> str:
    return (RUN / f"{name}.log").read_text()


def test_forwarders_send_each_name_where_the_spec_says(dn: Lab) -> None:
    out = dn.lookup("www.outside.example")
    assert "203.0.113.77" in out, out
    out = dn.lookup("db.corp.example")
    assert "203.0.113.78" in out, out      # the corp server's answer, not upstream's .99
    out = dn.lookup("x.quiet.test")
    assert "203.0.113.66" not in out, out  # local only: never asked upstream
    assert "www.outside.example" in _log("upstream")
    assert "db.corp.example" in _log("corp")
    assert "db.corp.example" not in _log("upstream")
    assert "outside.example" not in _log("corp")
    assert "quiet.test" not in _log("upstream") + _log("corp")


def test_live_changes_are_answered_without_a_network_restart(dn: Lab) -> None:
    pid = dn.dnsmasq_pid()
    with iproute(dn.lv.netns) as ipr:
        bridge_index = ipr.link_lookup(ifname=BRIDGE)
    dns = dict(DNS, hosts=[{"ip": "10.156.1.88", "names": ["fresh.dn.test"]}])
    plan = dn.kvmnet("plan", spec(dns))
    assert [(a["kind"], a["impact"]) for a in plan["actions"]] == [
        ("network.update", "live")], plan
    assert dn.kvmnet("apply", spec(dns), "--yes")["ok"]
    assert dn.dnsmasq_pid() == pid, "the DNS host change restarted dnsmasq"
    assert "10.156.1.88" in dn.lookup("fresh.dn.test")
    # TXT and SRV records: live too (libvirt restarts its dnsmasq, not the network)
    dns = dict(dns, txt=[{"name": "info.dn.test", "value": "changed-live"}])
    plan = dn.kvmnet("plan", spec(dns))
    assert [(a["kind"], a["impact"]) for a in plan["actions"]] == [
        ("network.update", "live")], plan
    assert dn.kvmnet("apply", spec(dns), "--yes")["ok"]
    assert "changed-live" in dn.lookup("info.dn.test", "txt")
    with iproute(dn.lv.netns) as ipr:
        assert ipr.link_lookup(ifname=BRIDGE) == bridge_index, "the bridge was made anew"
    assert dn.ips[WEB] in dn.guest("ip -4 addr show eth0")


def test_removing_records_removes_the_answers(dn: Lab) -> None:
    plan = dn.kvmnet("plan", spec({}))
    assert [a["kind"] for a in plan["actions"]] == ["network.redefine"], plan
    assert any("- dnsmasq option: address=/apps.dn.test/10.156.1.77" in d
               for a in plan["actions"] for d in a["details"]), plan
    result = dn.kvmnet("apply", spec({}), "--yes")
    assert result["ok"], result
    dn.wait_guest()
    assert "kvmnet-dns-e2e" not in dn.lookup("info.dn.test", "txt")
    assert f"{WEB}.dn.test" not in dn.lookup("_http._tcp.dn.test", "srv")
    assert "10.156.1.77" not in dn.lookup("anything.apps.dn.test")
    assert "10.156.1.88" not in dn.lookup("fresh.dn.test")
