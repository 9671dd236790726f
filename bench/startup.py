"""Start-up: `kvmnet --help` and `kvmnet validate` of a small file (issue 8, item 3).

Whole processes, after one untimed warm-up run (byte-code cached, as on a user's
second run). `python -c pass` is the interpreter's own share. `-X importtime` of
each command names the imports that cost the most.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import KVMNET, bench_env, run, timed_runs
from bench.specgen import SMALL

# Issue 16's targets (median wall time, seconds): typer >= 0.29 loads pydantic.
TARGETS = {"kvmnet --help": 0.3, "kvmnet validate small.yaml": 0.5}


def top_imports(argv: list[str], n: int = 8) -> list[tuple[str, float]]:
    """The n top-level imports of a command with the largest cumulative time (ms)."""
    p = run([sys.executable, "-X", "importtime", *argv], env=bench_env())
    rows: list[tuple[str, float]] = []
    for line in p.err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = line[len("import time:"):].split("|")
        if not name.startswith("   "):             # depth 0: imported by the command itself
            rows.append((name.strip(), int(cum) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:n]


def measure(runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    env = bench_env()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kvb-startup-") as tmp:
        small = Path(tmp) / "small.yaml"
        small.write_text(SMALL)
        cmds = {"python -c pass": [sys.executable, "-c", "pass"],
                "kvmnet --help": [KVMNET, "--help"],
                "kvmnet validate small.yaml": [KVMNET, "validate", str(small)]}
        for name, argv in cmds.items():
            procs = timed_runs(argv, runs, env, f"startup {name}", log)
            out[name] = {"s": [p.seconds for p in procs], "cpu_s": [p.cpu_s for p in procs]}
        main = "from kvmnet.cli.main import main; import sys; sys.exit(main(sys.argv[1:]))"
        out["imports"] = {
            "kvmnet --help": top_imports(["-c", main, "--help"]),
            "kvmnet validate small.yaml": top_imports(["-c", main, "validate", str(small)]),
        }
    return out
