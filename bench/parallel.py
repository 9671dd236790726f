"""How the lab's libvirtd creates networks side by side: the floor's calls
(networkDefineXML, create, setAutostart per network) for N networks from W threads on
one connection, W taking turns within each round. What `kvmnet apply --parallel`'s
default rests on (BENCHMARKS.md). As root, under the lab's lock:

    flock /run/lock/kvmnet-suite.lock .venv/bin/python -m bench.parallel [-n 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import loadavg
from bench.lab_apply import URI, Job, cleanup, lab


def create_all(xmls: list[str], workers: int) -> float:
    """Seconds to define, start and autostart every network, from `workers` threads."""
    import libvirt

    conn = libvirt.open(URI)

    def one(xml: str) -> None:
        net = conn.networkDefineXML(xml)
        net.create()
        net.setAutostart(1)

    try:
        t0 = time.perf_counter()
        if workers == 1:
            for xml in xmls:
                one(xml)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(one, xmls))
        return time.perf_counter() - t0
    finally:
        conn.close()


def sweep(n: int, rounds: int, workers: list[int]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {w: [] for w in workers}
    with lab(), tempfile.TemporaryDirectory(prefix="kvb-parallel-") as tmp:
        xmls = list(Job(Path(tmp), n).xmls.values())
        for r in range(rounds):
            order = workers if r % 2 == 0 else workers[::-1]
            for w in order:
                cleanup()
                out[w].append(create_all(xmls, w))
        cleanup()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="networks (default 10)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3, 4, 6])
    args = ap.parse_args(argv)
    print(f"load average at start: {loadavg()}")
    res: dict[Any, Any] = sweep(args.n, args.rounds, args.workers)
    base = statistics.median(res[args.workers[0]])
    for w, xs in res.items():
        m = statistics.median(xs)
        print(f"{w} thread(s): median {m:.2f} s (min {min(xs):.2f}, max {max(xs):.2f}), "
              f"{m / base:.2f}x of {args.workers[0]}")
    print(f"load average at end: {loadavg()}")


if __name__ == "__main__":
    main()
