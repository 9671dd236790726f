"""Run every kvmnet benchmark and write BENCHMARKS.md (issue 8).

    bench/run                   everything, as published (about half an hour)
    bench/run --quick           tiny N, one run each, no Ansible/kcli, no guests
    bench/run --only scale startup --out /tmp/B.md

Sections: apply (the lab's real libvirtd, needs root), scale, startup, e2e
(boots a QEMU guest in the lab). A section that cannot run here is recorded with
the reason, not dropped silently. Raw samples go to bench/results.json (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import ROOT, loadavg, machine
from bench.report import write_report

SECTIONS = ("startup", "scale", "apply", "e2e")
PEERS = ("virsh", "ansible", "kcli-plan", "kcli-loop")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny N, one run each, virsh as the only peer, no e2e guests")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    ap.add_argument("--runs", type=int, help="runs per measurement (default 5; 1 with --quick)")
    ap.add_argument("--pairs", type=int,
                    help="apply: how many times the floor and kvmnet run, taking turns "
                         "going first (default 11; 1 with --quick); the peers run --runs "
                         "times")
    ap.add_argument("--apply-sizes", type=int, nargs="+", help="default 10 50")
    ap.add_argument("--scale-sizes", type=int, nargs="+", help="default 10 100 1000 5000")
    ap.add_argument("--peers", nargs="*", choices=PEERS, help="default: all (--quick: virsh)")
    ap.add_argument("--e2e-runs", type=int, help="guest boots per path (default 2)")
    ap.add_argument("--no-install", action="store_true",
                    help="do not make bench/.peers-venv from PyPI when it is missing")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite --out from the raw samples (--json), measure nothing")
    ap.add_argument("--json", type=Path, default=None,
                    help="raw samples (default: bench/results.json; --quick: none)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report_only:
        raw_in = args.json or ROOT / "bench" / "results.json"
        write_report(json.loads(raw_in.read_text()), args.out)
        return 0
    q = args.quick
    runs = args.runs or (1 if q else 5)
    sections = args.only or (("startup", "scale", "apply") if q else SECTIONS)
    cmd = " ".join(["bench/run", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    results: dict[str, Any] = {
        "command": cmd, "machine": machine(), "quick": q, "runs": runs, "skipped": {},
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "sections_at": {},
    }
    t0 = time.monotonic()
    raw = args.json or (None if q else ROOT / "bench" / "results.json")
    if args.only and raw is not None and raw.exists():
        # --only re-measures some sections: the others stay as the last full run left them
        old = json.loads(raw.read_text())
        results = {**old, "sections_at": old.get("sections_at", {}),
                   "skipped": {k: v for k, v in old.get("skipped", {}).items()
                               if k not in sections}}
        results.setdefault("reruns", []).append(cmd)
    for section in sections:
        results["sections_at"][section] = time.strftime("%Y-%m-%d %H:%M:%S %Z") + \
            f", load average {loadavg()}"
        _log(f"== {section}")
        why = _cannot(section)
        if why:
            results["skipped"][section] = why
            _log(f"skipped: {why}")
            continue
        try:
            results[section] = _run(section, args, runs, q)
        except Exception as e:  # noqa: BLE001 - record it, go on with the other sections
            results["skipped"][section] = f"failed: {type(e).__name__}: {e}"
            traceback.print_exc()
        _write(results, t0 if not args.only else None, args.out, raw)  # a long run keeps
        # what it has; the duration shown stays the last full run's
    _log(f"wrote {args.out}" + (f" and {raw}" if raw else ""))
    return 1 if any(v.startswith("failed") for v in results["skipped"].values()) else 0


def _write(results: dict[str, Any], t0: float | None, out: Path, raw: Path | None) -> None:
    if t0 is not None or "seconds" not in results:
        results["seconds"] = time.monotonic() - (t0 or time.monotonic())
    results["machine"]["loadavg_end"] = loadavg()
    write_report(results, out)
    if raw is not None:
        raw.write_text(json.dumps(results, indent=1) + "\n")


def _cannot(section: str) -> str | None:
    if section in ("apply", "e2e") and os.geteuid() != 0:
        return "needs root: the lab runs libvirtd in a network namespace"
    if section in ("apply", "e2e") and not os.access("/usr/sbin/libvirtd", os.X_OK):
        return "/usr/sbin/libvirtd is not installed (scripts/setup installs it)"
    return None


def _run(section: str, args: argparse.Namespace, runs: int, q: bool) -> Any:
    if section == "apply":
        from bench import lab_apply

        peers = args.peers if args.peers is not None else (["virsh"] if q else list(PEERS))
        return lab_apply.measure(args.apply_sizes or ([2] if q else [10, 50]), runs, peers,
                                 not args.no_install, _log,
                                 pairs=args.pairs or (1 if q else max(runs, 11)))
    if section == "scale":
        from bench import scale

        return scale.measure(args.scale_sizes or ([5, 20] if q else [10, 100, 1000, 5000]),
                             runs, _log)
    if section == "startup":
        from bench import startup

        return startup.measure(max(runs, 3 if q else 10), _log)
    from bench import e2e

    return e2e.measure(args.e2e_runs or (1 if q else 2), _log)


if __name__ == "__main__":
    sys.exit(main())
