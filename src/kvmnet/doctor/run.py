"""kvmnet doctor: read the host (libvirt, sysctls, firewall, links), then run the checks.

The checks themselves are pure (doctor_checks, doctor_links); this module only
fetches. Files of the host are read under --proc-root / --sysfs-root when given
(tests), else inside the network namespace with `ip netns exec NS cat FILE`
(argument lists, no shell; `ip netns exec` also mounts the namespace's /sys),
else directly. The firewall is read as JSON (`nft -j list ruleset`), never as text.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from kvmnet.doctor.checks import (
    Check,
    Facts,
    check_backend,
    check_bridge_nf,
    check_dnsmasq,
    check_forward_policy,
    check_ip_forward,
    check_libvirt,
    forward_drop_chains,
)
from kvmnet.doctor.forwarding6 import check_ip6_forward
from kvmnet.doctor.links import (
    check_accept_ra,
    check_bridges,
    check_macs,
    check_mtu,
    check_route_collision,
    check_wireless,
)
from kvmnet.doctor.names import check_names
from kvmnet.errors import KvmnetError
from kvmnet.model.live import HostState, LiveState
from kvmnet.model.spec import Spec
from kvmnet.model.uri import is_local, is_test

DNSMASQ = "/usr/sbin/dnsmasq"


@dataclass(frozen=True)
class HostReader:
    """Reads the host's files and runs read-only commands: in a namespace, under fake
    roots (/proc -> proc_root, /sys -> sysfs_root), or plainly."""

    netns: str | None = None
    sysfs_root: Path | None = None
    proc_root: Path | None = None

    def _local(self, path: str) -> Path | None:
        for prefix, root in (("/proc/", self.proc_root), ("/sys/", self.sysfs_root)):
            if root is not None and path.startswith(prefix):
                return root / path[len(prefix):]
        return None if self.netns else Path(path)

    def read(self, path: str) -> str | None:
        local = self._local(path)
        if local is not None:
            try:
                return local.read_text()
            except OSError:
                return None
        r = self.run(["cat", path])
        return r.stdout if r is not None and r.returncode == 0 else None

    def run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str] | None:
        full = ["ip", "netns", "exec", self.netns, *args] if self.netns else list(args)
        try:
            return subprocess.run(full, capture_output=True, text=True, timeout=30,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None


def _libvirt(uri: str | None) -> tuple[str, LiveState | None, str | None, str | None]:
    """(uri, live state, version, error)."""
    from kvmnet.backend.libvirt import Connection, default_uri
    from kvmnet.backend.read import read_state

    u = default_uri(uri)
    try:
        conn = Connection.open(u)
    except KvmnetError as e:
        return u, None, None, str(e)
    try:
        v = conn.read("version", conn.raw.getLibVersion)
        version = f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"
        return u, read_state(conn, HostState(readable=False)), version, None
    except KvmnetError as e:
        return u, None, None, f"connected to {u}, but reading failed: {e}"
    finally:
        conn.close()


def _ruleset(reader: HostReader) -> tuple[dict[str, Any] | None, str | None]:
    r = reader.run(["nft", "-j", "list", "ruleset"])
    if r is None:
        return None, "nft is not installed (apt-get install nftables)"
    if r.returncode != 0:
        return None, f"nft -j list ruleset failed: {r.stderr.strip() or r.returncode}"
    try:
        data = json.loads(r.stdout)
    except ValueError as e:
        return None, f"nft -j printed no JSON: {e}"
    return (data, None) if isinstance(data, dict) else (None, "nft -j printed no object")


def gather(uri: str | None = None, spec: Spec | None = None, spec_file: str = "FILE",
           netns: str | None = None, sysfs_root: Path | None = None,
           proc_root: Path | None = None, dnsmasq: str = DNSMASQ) -> Facts:
    from kvmnet.backend.host import read_host, wireless_links

    u, live, version, err = _libvirt(uri)
    base = Facts(uri=u, netns=netns, libvirt_error=err, libvirt_version=version, live=live,
                 spec=spec, spec_file=spec_file, connect=uri)
    if not is_local(u):
        return replace(base, host_error=f"libvirt at {u} is reached over the network, "
                                        "not on this machine's socket: run kvmnet doctor "
                                        "on its host for the host checks")
    reader = HostReader(netns, sysfs_root, proc_root)
    host: HostState | None = None
    host_error = None
    try:
        host = read_host(netns)
    except KvmnetError as e:
        host_error = str(e)
    ruleset, rs_error = _ruleset(reader)
    names = set(host.links) if host else set()
    if spec is not None:
        names |= {p for hb in spec.host.bridges.values() for p in hb.ports}
        names |= {p for b in spec.host.bonds.values() for p in b.ports}
    try:
        wireless = wireless_links(sorted(names), netns, sysfs_root)
    except KvmnetError:
        wireless = frozenset()  # no `ip` for the namespace's /sys: nothing to go on
    from kvmnet.backend.names import read_names

    bridges = tuple(sorted({n.network.bridge for n in live.networks.values()
                            if n.network.bridge})) if live else ()
    names_live = read_names(Path("/"), bridges)
    fwd = reader.read("/proc/sys/net/ipv4/ip_forward")
    fwd6 = reader.read("/proc/sys/net/ipv6/conf/all/forwarding")
    bridge_nf = {k: _strip(reader.read(f"/proc/sys/net/bridge/bridge-nf-call-{k}"))
                 for k in ("iptables", "ip6tables", "arptables")}
    return replace(
        base, live_on_host=live is not None and not is_test(u), host=host,
        host_error=host_error, ip_forward=_strip(fwd), ip6_forward=_strip(fwd6),
        bridge_nf=bridge_nf, ruleset=ruleset,
        ruleset_error=rs_error, dnsmasq=dnsmasq if os.access(dnsmasq, os.X_OK) else None,
        wireless=wireless, names=names_live)


def _strip(v: str | None) -> str | None:
    return v.strip() if v is not None else None


def run_checks(f: Facts) -> list[Check]:
    """Every check, in the order a person would fix things."""
    if f.host is None and f.host_error and not is_local(f.uri):
        host_checks = [Check(cid, "skip", title, f.host_error) for cid, title in (
            ("ip_forward", "IPv4 forwarding"), ("ip6_forward", "IPv6 forwarding"),
            ("br_netfilter", "br_netfilter (bridged traffic through the firewall)"),
            ("forward_policy", "FORWARD policy"), ("firewall_backend", "libvirt firewall "
                                                                        "backend"),
            ("dnsmasq", "dnsmasq installed"), ("wireless", "no Wi-Fi NIC in a bridge or bond"),
            ("route_collision", "subnets free of host routes"),
            ("mtu", "bridge and port MTUs match"),
            ("accept_ra", "IPv6 router advertisements while forwarding (accept_ra)"),
            ("bridges", "networks' bridges exist and are up"),
            ("names", "guests' names on the host"))]
    else:
        drop = bool(f.ruleset and forward_drop_chains(f.ruleset))
        host_checks = [check_ip_forward(f), check_ip6_forward(f), check_bridge_nf(f, drop),
                       check_forward_policy(f),
                       check_backend(f), check_dnsmasq(f), check_wireless(f),
                       check_route_collision(f), check_mtu(f), check_accept_ra(f),
                       check_bridges(f),
                       check_names(f)]
    return [check_libvirt(f), *host_checks, check_macs(f)]


def doctor(uri: str | None = None, spec: Spec | None = None, spec_file: str = "FILE",
           netns: str | None = None, sysfs_root: Path | None = None,
           proc_root: Path | None = None) -> tuple[Facts, list[Check]]:
    facts = gather(uri, spec, spec_file, netns, sysfs_root, proc_root)
    return facts, run_checks(facts)
