"""What every benchmark shares: running a process and timing it, statistics, the machine.

A measurement is always a whole process (start to exit) unless a name says otherwise
(`*_call_s`): that is what a user waits for, and it puts kvmnet, the floor and the
peers on the same footing. Peak memory is the child's ru_maxrss (os.wait4).
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
KVMNET = str(VENV_BIN / "kvmnet")
PEERS_VENV = ROOT / "bench" / ".peers-venv"


class BenchError(RuntimeError):
    """A benchmark step failed in a way that makes its numbers meaningless."""


@dataclass(frozen=True)
class Proc:
    argv: tuple[str, ...]
    seconds: float
    maxrss_mb: float
    rc: int
    cpu_s: float                  # user + system CPU time: steadier than wall when loaded
    out: str
    err: str

    def check(self) -> Proc:
        if self.rc != 0:
            tail = "\n".join((self.err or self.out).splitlines()[-15:])
            raise BenchError(f"{shlex.join(self.argv)} exited {self.rc}:\n{tail}")
        return self


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 900.0, stdin: str | None = None) -> Proc:
    """Run argv to completion: wall time from spawn to reaped, the child's peak RSS."""
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe, \
            tempfile.TemporaryFile() as fi:
        if stdin is not None:
            fi.write(stdin.encode())
            fi.seek(0)
        t0 = time.perf_counter()
        p = subprocess.Popen(list(argv), stdin=fi, stdout=fo, stderr=fe,
                             env=dict(env) if env is not None else None, cwd=cwd)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        fo.seek(0)
        fe.seek(0)
        return Proc(tuple(argv), seconds, ru.ru_maxrss / 1024, p.returncode,
                    ru.ru_utime + ru.ru_stime, fo.read().decode(errors="replace"),
                    fe.read().decode(errors="replace"))


def bench_env(**extra: str) -> dict[str, str]:
    """The environment benchmarks run commands in: no byte-code writing switched off
    (a user's kvmnet has its .pyc files), no colours, a fixed terminal width, and no
    kvmnet server (KVMNET_NO_SERVER: kvmnet in its own process, as without one; the
    rows "(server)" say otherwise)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"NO_COLOR": "1", "COLUMNS": "120", "LC_ALL": "C.UTF-8",
                "KVMNET_NO_SERVER": "1"})
    env.update(extra)
    return env


def summary(xs: Sequence[float]) -> dict[str, float]:
    """median, min, max (and n) of a series of samples."""
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def warm(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """One untimed run: byte-code and the page cache are then as a user's second run."""
    run(argv, env=env)


def timed_runs(argv: Sequence[str], runs: int, env: Mapping[str, str], label: str,
               log: Callable[[str], None], after: Callable[[], object] | None = None
               ) -> list[Proc]:
    """warm(), then RUNS runs of argv, each of which must exit 0; AFTER (untimed) follows
    the warm-up and every run, e.g. to remove what the command wrote."""
    warm(argv, env)
    if after is not None:
        after()
    procs = []
    for r in range(runs):
        log(f"{label} run {r + 1}/{runs}")
        procs.append(run(argv, env=env).check())
        if after is not None:
            after()
    return procs


# ---------------------------------------------------------------- the machine


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
    except OSError:
        pass
    return "?"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    virsh = subprocess.run(["virsh", "--version"], capture_output=True, text=True, check=False)
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb) / 2**20, 1) if mem_kb.isdigit() else "?",
        "kernel": platform.release(),
        "os": _first("/etc/os-release", "PRETTY_NAME").strip('"'),
        "python": platform.python_version(),
        "libvirt": virsh.stdout.strip() or "?",
        "libvirt-python": _version("libvirt-python"),
        "PyYAML": _version("PyYAML"),
        "lxml": _version("lxml"),
        "typer": _version("typer"),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def loadavg() -> str:
    return _loadavg()
