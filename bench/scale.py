"""validate / plan / render at scale, beside PyYAML's C loader (issue 8, item 2).

Generated specs of N networks with 10 guest NICs per network (bench.specgen);
each command is a whole process (start to exit) with its peak RSS; plan runs
against libvirt's in-process test:///default driver, so nothing real changes.
The yardstick is a Python process that only loads the same file with
yaml.load(..., Loader=yaml.CSafeLoader): the least any YAML tool must pay.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import KVMNET, bench_env, timed_runs
from bench.specgen import scale_spec

YAML_C = "import sys, yaml; yaml.load(open(sys.argv[1], 'rb'), Loader=yaml.CSafeLoader)"


def commands(spec: Path, out_dir: Path) -> dict[str, list[str]]:
    return {
        "yaml_c": [sys.executable, "-c", YAML_C, str(spec)],
        "validate": [KVMNET, "validate", str(spec)],
        "plan": [KVMNET, "plan", str(spec), "-c", "test:///default"],
        "render": [KVMNET, "render", str(spec)],  # to stdout: -o fsyncs each of 10 N files
    }


def measure(sizes: list[int], runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    """{"N": {"bytes": file size, stage: {"s": [...], "rss_mb": [...]}}}."""
    out: dict[str, Any] = {}
    env = bench_env()
    with tempfile.TemporaryDirectory(prefix="kvb-scale-") as tmp:
        for n in sizes:
            spec = Path(tmp) / f"scale-{n}.yaml"
            spec.write_text(scale_spec(n))
            render_dir = Path(tmp) / "render"
            cmds = commands(spec, render_dir)
            row: dict[str, Any] = {"bytes": spec.stat().st_size, "nics": 10 * n}
            for name, argv in cmds.items():
                procs = timed_runs(argv, runs, env, f"scale N={n} {name}", log,
                                   after=partial(shutil.rmtree, render_dir, ignore_errors=True))
                row[name] = {"s": [p.seconds for p in procs],
                             "rss_mb": [p.maxrss_mb for p in procs]}
            out[str(n)] = row
    return out
