"""Where the time of `kvmnet plan` goes: each stage timed in one process, and an
optional cProfile of the whole run. A tool for the profile-driven work, not a
benchmark: the numbers in BENCHMARKS.md come from whole processes (bench.scale).

    .venv/bin/python -m bench.stages FILE [-c test:///default] [--profile OUT.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _timed(rows: list[tuple[str, float]], name: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    rows.append((name, time.perf_counter() - t0))
    return out


def stages(path: Path, uri: str = "test:///default") -> list[tuple[str, float]]:
    """(stage, seconds) for one plan of `path`, imports included as their own stage."""
    rows: list[tuple[str, float]] = []

    def imports() -> None:
        import kvmnet.service.ops  # noqa: F401
        import kvmnet.spec.check  # noqa: F401
        import kvmnet.spec.load  # noqa: F401

    _timed(rows, "import", imports)
    from kvmnet.backend.libvirt import Connection
    from kvmnet.model.spec import Spec
    from kvmnet.plan import make_plan
    from kvmnet.service.ops import read_live
    from kvmnet.spec.check import check
    from kvmnet.spec.load import compose, read_text

    text = _timed(rows, "read file", lambda: read_text(str(path)))
    data, pos = _timed(rows, "load: YAML + positions", lambda: compose(text, str(path), []))
    spec = _timed(rows, "load: models", lambda: Spec.model_validate(data, strict=True))
    _timed(rows, "check", lambda: check(spec, pos, str(path)))
    conn = _timed(rows, "connect", lambda: Connection.open(uri))
    live = _timed(rows, "read live", lambda: read_live(conn))
    _timed(rows, "plan (pure)", lambda: make_plan(spec, live))
    conn.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("-c", "--connect", default="test:///default")
    ap.add_argument("--profile", type=Path, help="also write a cProfile of the run here "
                                                 "and print its top 40 by cumulative time")
    args = ap.parse_args(argv)
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    rows = stages(args.file, args.connect)
    if prof:
        prof.disable()
        prof.dump_stats(args.profile)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
        print(buf.getvalue())
    for name, s in rows:
        print(f"{name:>26} {s:8.3f} s")
    print(f"{'total':>26} {sum(s for _, s in rows):8.3f} s")


if __name__ == "__main__":
    main()
