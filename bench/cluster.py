"""Apply and no-op plan across three real hypervisors reached over ssh (issue 26).

The hosts are tests/lab/cluster.py's: three libvirtd 9.0 daemons, each in its own mount
and network namespace behind its own sshd, reached as qemu+ssh://root@10.164.0.1N/system
(OpenSSH, ed25519 key, pinned host key) over a veth underlay through Open vSwitch's
userspace datapath; OVN northbound in a fourth namespace. The spec puts NETS NAT
networks on every host and GUESTS floating guests with one NIC and a reservation on
each (so every host gets NETS networks and NETS x GUESTS reservations), plus one
overlay network with a port per guest in OVN.

Measured, in this process with kvmnet.service.multihost.Session (what `kvmnet apply`
runs), with 1 worker (serial) and with 8 (concurrent):
- apply from nothing (plan + apply; the networks are removed between runs, untimed),
- the no-op plan after it,
- per host: its plan and apply seconds (Outcome.plan_s / apply_s), and
- the ssh connection itself: libvirt.open + close of each host, and one round trip
  (getLibVersion) on an open connection.

    flock /run/lock/kvmnet-suite.lock .venv/bin/python -m bench.cluster [--runs 3]

The 50-hypervisor figure is extrapolated (see `extrapolate`), never measured.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import libvirt
import yaml

from bench.common import ROOT
from kvmnet.service.multihost import WORKERS, Session
from kvmnet.spec.load import load_text

sys.path.insert(0, str(ROOT / "tests"))
from lab.cluster import Cluster  # noqa: E402
from lab.libvirtd import quiet_libvirt, remove_objects  # noqa: E402

NETS, GUESTS = 4, 10


def spec(cluster: Any) -> str:
    nets: dict[str, Any] = {
        f"kvt-cl-b{n}": {"mode": "nat", "bridge": f"kvtc-b{n}",
                         "ipv4": {"address": f"10.164.{40 + n}.1/24",
                                  "dhcp": f"10.164.{40 + n}.100-10.164.{40 + n}.199"}}
        for n in range(NETS)}
    nets["kvt-cl-bov"] = {"mode": "overlay", "ipv4": {"address": "10.164.50.1/24",
                                                      "dhcp": "10.164.50.100-10.164.50.199"}}
    guests = {f"kvt-cl-g{g}": {"interfaces": [
        {"network": f"kvt-cl-b{g % NETS}", "ipv4": f"10.164.{40 + g % NETS}.{10 + g}"},
        {"network": "kvt-cl-bov"}]} for g in range(GUESTS)}
    data = {"owner": "kvt-cl-bench",
            "hosts": {hv.name: {"uri": hv.uri} for hv in cluster.hvs},
            "ovn": {"northbound": cluster.nb_remote}, "networks": nets, "guests": guests}
    return yaml.safe_dump(data, sort_keys=False)


def session(text: str, path: str, workers: int) -> Session:
    spec_, pos = load_text(text, path)
    return Session(spec_, pos, path, lock_wait=30.0, workers=workers)


def clean(cluster: Any) -> None:
    """Remove the bench's networks from every host and OVN (untimed)."""
    for hv in cluster.hvs:
        conn = hv.open()
        try:
            with quiet_libvirt():
                remove_objects(conn, "kvt-cl-")
        finally:
            conn.close()
    for table in ("Logical_Switch", "DHCP_Options"):
        for uuid in cluster.nbctl("--bare", "--columns=_uuid", "list", table).split():
            cluster.nbctl("--if-exists", "destroy", table, uuid)


def one_run(cluster: Any, text: str, path: str, workers: int) -> dict[str, Any]:
    clean(cluster)
    t0 = time.monotonic()
    with session(text, path, workers) as s:
        s.plan()
        s.apply()
        apply_s = time.monotonic() - t0
        bad = [o.target.name for o in s.outcomes if o.failed]
        if bad:
            raise RuntimeError(f"apply failed on {bad}: {[o.error for o in s.outcomes]}")
        per_host = {o.target.name: (o.plan_s, o.apply_s) for o in s.outcomes}
        writes = sum(o.writes for o in s.outcomes)
    cpu0, t0 = time.process_time(), time.monotonic()
    with session(text, path, workers) as s:
        s.plan()
        noop_s = time.monotonic() - t0
        if any(o.changes or o.failed for o in s.outcomes):
            raise RuntimeError("the plan after apply is not empty")
        noop_host = {o.target.name: o.plan_s for o in s.outcomes}
    return {"apply": apply_s, "noop": noop_s, "writes": writes, "per_host": per_host,
            "noop_host": noop_host, "noop_cpu": time.process_time() - cpu0}


def ssh_cost(cluster: Any, runs: int) -> dict[str, float]:
    """Median seconds of libvirt.open+close (an ssh login + virt-ssh-helper) and of one
    libvirt call round trip on an open connection, over every host and RUNS tries."""
    opens, calls = [], []
    for _ in range(runs):
        for hv in cluster.hvs:
            t0 = time.monotonic()
            conn = libvirt.open(hv.uri)
            conn.close()
            opens.append(time.monotonic() - t0)
        for hv in cluster.hvs:
            conn = libvirt.open(hv.uri)
            t0 = time.monotonic()
            for _ in range(20):
                conn.getLibVersion()
            calls.append((time.monotonic() - t0) / 20)
            conn.close()
    return {"open": statistics.median(opens), "rtt": statistics.median(calls)}


def extrapolate(hosts: int, measured: float, measured_hosts: int, per_host: float,
                cpu_per_host: float, workers: int = WORKERS) -> float:
    """Seconds for HOSTS hosts like the measured ones. Hosts go WORKERS at a time and
    a host's time is mostly waiting (ssh login, round trips), so each further wave of
    WORKERS hosts adds one host's time (PER_HOST) to what MEASURED_HOSTS took
    concurrently (MEASURED). kvmnet's own Python work is serialised by the GIL, so the
    run is at least HOSTS x its CPU per host (CPU_PER_HOST)."""
    waves = math.ceil(hosts / workers) - math.ceil(measured_hosts / workers)
    return max(measured + max(0, waves) * per_host, hosts * cpu_per_host)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    cluster = Cluster().start()
    try:
        return report(cluster, args.runs, args.json)
    finally:
        cluster.stop()


def report(cluster: Any, runs: int, out: Path | None) -> int:
    text = spec(cluster)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.yaml")
        Path(path).write_text(text)
        ssh = ssh_cost(cluster, runs)
        res: dict[int, list[dict[str, Any]]] = {1: [], WORKERS: []}
        for _ in range(runs):
            for w in res:      # interleaved: the machine's load hits both alike
                res[w].append(one_run(cluster, text, path, w))
        clean(cluster)
    data = {"ssh": ssh, "hosts": [h.name for h in cluster.hvs], "runs": res}
    if out is not None:
        out.write_text(json.dumps(data, indent=1, default=str))
    print(summary(data))
    return 0


def summary(data: dict[str, Any]) -> str:
    """The tables and the extrapolation (also from a saved --json: `summary(json)`)."""
    ssh, hosts = data["ssh"], data["hosts"]
    res = {int(w): rs for w, rs in data["runs"].items()}
    med = {w: {k: statistics.median(r[k] for r in rs) for k in ("apply", "noop", "noop_cpu")}
           for w, rs in res.items()}
    host_plan = statistics.median(r["noop_host"][h] for r in res[1] for h in hosts)
    host_apply = statistics.median(sum(r["per_host"][h]) for r in res[1] for h in hosts)
    ovn_noop = statistics.median(r["noop_host"]["OVN northbound"] for r in res[1])
    cpu = med[1]["noop_cpu"] / (len(hosts) + 1)
    lines = [f"ssh: open+close {ssh['open'] * 1000:.0f} ms, one call {ssh['rtt'] * 1000:.2f} ms",
             f"writes per apply: {res[1][0]['writes']}",
             "| workers | apply from nothing (s) | no-op plan (s) |", "|---:|---:|---:|"]
    lines += [f"| {w} | {m['apply']:.2f} | {m['noop']:.2f} |" for w, m in med.items()]
    lines.append(f"per host (serial, median): no-op plan {host_plan:.2f} s, plan+apply "
                 f"{host_apply:.2f} s; OVN no-op {ovn_noop:.2f} s; CPU of this process per "
                 f"target in a no-op plan {cpu:.3f} s")
    n0 = len(hosts)
    for n in (10, 50):
        noop = extrapolate(n, med[WORKERS]["noop"], n0, host_plan, cpu)
        first = extrapolate(n, med[WORKERS]["apply"], n0, host_apply, cpu)
        lines.append(f"extrapolated, {n} hosts, {WORKERS} workers: no-op plan {noop:.1f} s, "
                     f"first apply {first:.1f} s; serial: no-op {n * host_plan + ovn_noop:.1f} "
                     f"s, first apply {n * host_apply + ovn_noop:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
