"""The cluster suite's world (tests/cluster/): the lab of tests/lab/cluster.py, the spec,
two tiny guests, and kvmnet driven as a user drives it (the CLI, in a process).

    hv1: kvt-cl-a  eth0 on kvt-cl-nat (hv1's own NAT island) 10.164.10.10
                   eth1 on kvt-cl-ov  (OVN overlay)          10.164.20.10
    hv2: kvt-cl-b  eth0 on kvt-cl-nat (hv2's own NAT island) 10.164.10.11
                   eth1 on kvt-cl-ov                         a pool address (OVN's DHCP)
    hv3: the overlay router's gateway chassis (br-ex to kvt-cl-inet's ext0)

Every network's bridge and subnet is in 10.164.0.0/16 and named kvt-cl-*/kvtc*.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import yaml

from lab.cluster import EXT_INET, GATEWAY, GUEST_DIR, PHYSNET, Cluster, copy_guest_files
from lab.guest import domain_xml, run_url

KVMNET = str(Path(sys.executable).parent / "kvmnet")
NAT, OV = "kvt-cl-nat", "kvt-cl-ov"
ROUTER_OUT = "10.164.3.10"
GUESTS = {"kvt-cl-a": "hv1", "kvt-cl-b": "hv2"}
NAT_IP = {"kvt-cl-a": "10.164.10.10", "kvt-cl-b": "10.164.10.11"}
OV_GW = "10.164.20.1"
BOOT_TIMEOUT = 180.0
LEASE_RE = r"KVMNET-LEASE (\S+) (\S+) (eth\d)"


def spec(cluster: Cluster, extra_net: bool = False) -> dict[str, Any]:
    nets: dict[str, Any] = {
        NAT: {"mode": "nat", "bridge": "kvtc-nat0",
              "ipv4": {"address": "10.164.10.1/24", "dhcp": "10.164.10.100-10.164.10.199"}},
        OV: {"mode": "overlay", "mtu": 1442,
             "ipv4": {"address": f"{OV_GW}/24", "dhcp": "10.164.20.100-10.164.20.199"},
             "router": {"external": {"physnet": PHYSNET, "address": f"{ROUTER_OUT}/24",
                                     "gateway": EXT_INET,
                                     "chassis": [f"kvt-cl-hv{GATEWAY}"]},
                        "snat": True}},
    }
    if extra_net:   # one more NAT network on every host (the faults' change)
        nets["kvt-cl-x"] = {"mode": "nat", "bridge": "kvtc-x0",
                            "ipv4": {"address": "10.164.30.1/24",
                                     "dhcp": "10.164.30.100-10.164.30.199"}}
    return {
        "owner": "kvt-cl",
        "hosts": {hv.name: {"uri": hv.uri} for hv in cluster.hvs},
        "ovn": {"northbound": cluster.nb_remote},
        "networks": nets,
        "guests": {
            "kvt-cl-a": {"hosts": ["hv1"], "interfaces": [
                {"network": NAT, "model": "virtio", "ipv4": NAT_IP["kvt-cl-a"]},
                {"network": OV, "model": "virtio", "ipv4": "10.164.20.10"}]},
            "kvt-cl-b": {"hosts": ["hv2"], "interfaces": [
                {"network": NAT, "model": "virtio", "ipv4": NAT_IP["kvt-cl-b"]},
                {"network": OV, "model": "virtio"}]},
        },
    }


def kvmnet(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KVMNET, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def as_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)  # type: ignore[no-any-return]
    except ValueError:
        raise AssertionError(f"not JSON (rc {proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}") from None


@dataclass
class World:
    cluster: Cluster
    dir: Path
    domains: dict[str, Any] = field(default_factory=dict)   # name -> virDomain (socket)
    conns: dict[str, Any] = field(default_factory=dict)     # hv name -> virConnect (socket)
    leases: dict[tuple[str, str], str] = field(default_factory=dict)  # (guest, ethN) -> ip
    seconds: dict[str, float] = field(default_factory=dict)

    def write(self, data: dict[str, Any], name: str = "cluster.yaml") -> Path:
        p = self.dir / name
        p.write_text(yaml.safe_dump(data, sort_keys=False))
        return p

    def serial(self, guest: str) -> Path:
        return GUEST_DIR / "serial" / f"{guest}.log"

    def console(self, guest: str) -> str:
        try:
            return self.serial(guest).read_text(errors="replace")
        except OSError:
            return ""

    def define_guests(self) -> None:
        """The two domains, without NICs: kvmnet attaches the spec's."""
        kernel, initrd = copy_guest_files()
        for g, h in GUESTS.items():
            conn = self.conns.setdefault(h, self.cluster.hv(h).open())
            log = self.serial(g)
            log.unlink(missing_ok=True)
            self.domains[g] = conn.defineXML(domain_xml(g, kernel, initrd, [], log))

    def boot(self) -> None:
        """Start both guests; wait for a lease on eth0 and eth1 of each."""
        t0 = time.monotonic()
        for dom in self.domains.values():
            dom.create()
        want = {(g, eth) for g in GUESTS for eth in ("eth0", "eth1")}
        while want - set(self.leases):
            for g in GUESTS:
                for ip, _mac, eth in re.findall(LEASE_RE, self.console(g)):
                    self.leases[(g, eth)] = ip
                if not self.domains[g].isActive():
                    raise AssertionError(f"{g} stopped:\n{self.console(g)[-3000:]}")
            if time.monotonic() - t0 > BOOT_TIMEOUT:
                missing = sorted(want - set(self.leases))
                raise AssertionError(f"no lease within {BOOT_TIMEOUT:.0f}s: {missing}\n" +
                                     "\n".join(f"== {g}\n{self.console(g)[-2000:]}"
                                               for g in GUESTS))
            time.sleep(0.3)
        self.seconds["boot to both leases"] = time.monotonic() - t0

    def guest_run(self, guest: str, command: str, timeout: float = 30.0) -> tuple[int, str]:
        """Run COMMAND in GUEST (its /cgi-bin/run, reached from its own hypervisor on the
        NAT network); (exit code, output)."""
        hv = self.cluster.hv(GUESTS[guest])
        res = hv.x(["wget", "--no-proxy", "-q", "-t", "1", "-T", str(int(timeout)), "-O", "-",
                    run_url(NAT_IP[guest], command)], check=False, timeout=timeout + 10)
        m = re.search(r"KVMNET-RC (\d+)\s*$", res.stdout)
        if m is None:
            return -1, f"{res.stdout}{res.stderr}"
        return int(m.group(1)), res.stdout[: m.start()]

    def close(self) -> None:
        for dom in self.domains.values():
            try:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
            except libvirt.libvirtError:
                pass
        for conn in self.conns.values():
            try:
                conn.close()
            except libvirt.libvirtError:
                pass
        self.domains.clear()
        self.conns.clear()

    def reconnect(self, hv: str) -> None:
        """After HV's libvirtd restarted: fresh handles to its domains."""
        old = self.conns.pop(hv, None)
        if old is not None:
            try:
                old.close()
            except libvirt.libvirtError:
                pass
        conn = self.conns[hv] = self.cluster.hv(hv).open()
        for g, h in GUESTS.items():
            if h == hv:
                self.domains[g] = conn.lookupByName(g)
