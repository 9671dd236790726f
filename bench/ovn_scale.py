"""How plan and apply of overlay networks scale with the number of ports (issue 10, item 5).

A generated spec: HOSTS simulated hypervisors, each with the same number of guests,
one NIC per guest on one of NETS overlay networks (/22 each, so ports spread evenly);
every other guest gets a fixed ipv4, the rest a dynamic address. Applied to an OVN
northbound ovsdb-server alone (no northd, no controllers: what kvmnet writes and
reads is NB only), started here with its own run dir and stopped by its pidfile.

For each port count: read NB, plan (pure), apply (one transaction per row), then
the no-op read+plan, and a one-port change. The libvirt side is test:///default.

    .venv/bin/python -m bench.ovn_scale --ports 250 500 1000 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from dataclasses import replace  # noqa: E402

from kvmnet.apply.runner import run  # noqa: E402
from kvmnet.backend.libvirt import Connection  # noqa: E402
from kvmnet.backend.ovsdb import read_nb  # noqa: E402
from kvmnet.model.spec import Spec  # noqa: E402
from kvmnet.plan import make_plan  # noqa: E402
from kvmnet.service.ops import read_live  # noqa: E402
from lab.ovn import Central, stop_pidfile  # noqa: E402

BENCH_DIR = Path("/run/kvmnet-ovn-bench")


def make_spec(nb: str, ports: int, hosts: int, nets: int) -> Spec:
    networks = {f"ov{n:02d}": {"mode": "overlay", "ipv4": {
        "address": f"10.240.{4 * n}.1/22", "dhcp": f"10.240.{4 * n}.10-10.240.{4 * n + 3}.250"}}
        for n in range(nets)}
    guests: dict[str, Any] = {}
    per_net: dict[int, int] = {}
    for i in range(ports):
        h, g = i % hosts, i // hosts
        n = i % nets
        k = per_net[n] = per_net.get(n, 0) + 1
        nic: dict[str, Any] = {"network": f"ov{n:02d}"}
        if i % 2 == 0:
            nic["ipv4"] = f"10.240.{4 * n + k // 250}.{10 + k % 250}"
        guests[f"hv{h:02d}-vm{g:03d}"] = {"interfaces": [nic]}
    return Spec.model_validate({"ovn": {"northbound": nb}, "networks": networks,
                                "guests": guests})


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = fn()
    return out, time.monotonic() - t0


def measure(ports: int, hosts: int, nets: int) -> dict[str, Any]:
    central = Central(dir=BENCH_DIR / f"p{ports}", northd=False)
    central.start()
    conn = Connection.open("test:///default")
    try:
        spec = make_spec(central.nb_remote, ports, hosts, nets)
        assert spec.ovn is not None
        libvirt_live = read_live(conn)
        row: dict[str, Any] = {"ports": ports, "hosts": hosts, "networks": nets}
        nb, row["read_empty_s"] = timed(lambda: read_nb(spec.ovn))
        plan, row["plan_s"] = timed(lambda: make_plan(spec, replace(libvirt_live, ovn=nb)))
        live = replace(libvirt_live, ovn=nb)
        report, row["apply_s"] = timed(lambda: run(plan, conn, live))
        assert report.ok, [r.message for r in report.results if r.status == "failed"]
        row["writes"] = report.writes
        nb, row["read_full_s"] = timed(lambda: read_nb(spec.ovn))
        again, row["noop_plan_s"] = timed(lambda: make_plan(spec, replace(libvirt_live, ovn=nb)))
        assert not again.changes, [a.summary for a in again.actions][:5]
        g0 = sorted(spec.guests)[1]                      # a dynamic one: give it an address
        n0 = int((spec.guests[g0].interfaces[0].network or "ov00")[2:])
        nic = spec.guests[g0].interfaces[0].model_copy(
            update={"ipv4": f"10.240.{4 * n0 + 3}.254"})
        spec2 = spec.model_copy(update={"guests": {**spec.guests, g0: spec.guests[g0]
                                                   .model_copy(update={"interfaces": [nic]})}})
        one, row["one_change_plan_s"] = timed(
            lambda: make_plan(spec2, replace(libvirt_live, ovn=nb)))
        rep1, row["one_change_apply_s"] = timed(lambda: run(one, conn, live))
        row["one_change_writes"] = rep1.writes
        row["nb_db_bytes"] = (central.dir / "nb.db").stat().st_size
        return row
    finally:
        conn.close()
        central.stop()
        shutil.rmtree(central.dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--networks", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args(argv)
    for p in BENCH_DIR.rglob("*.pid") if BENCH_DIR.is_dir() else ():
        stop_pidfile(p)                                  # leftovers of an earlier run
    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    cols = ("ports", "writes", "read_empty_s", "plan_s", "apply_s", "read_full_s",
            "noop_plan_s", "one_change_plan_s", "one_change_apply_s")
    if not args.json:
        print(" ".join(f"{c:>18}" for c in cols))
    for n in args.ports:
        row = measure(n, args.hosts, args.networks)
        if args.json:
            print(json.dumps(row))
        else:
            print(" ".join(f"{row[c]:>18.3f}" if isinstance(row[c], float) else f"{row[c]:>18}"
                           for c in cols), flush=True)
    shutil.rmtree(BENCH_DIR, ignore_errors=True)


if __name__ == "__main__":
    main()
