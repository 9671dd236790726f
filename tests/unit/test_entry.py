"""The `kvmnet` console command (kvmnet.cli.entry.run) ends with os._exit after main():
what it prints and the exit code must be those of cli.main, and whatever needs the
interpreter's normal exit (an atexit handler, another thread) must still get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"
VIA_RUN = "from kvmnet.cli.entry import run; run()"
VIA_MAIN = "import sys; from kvmnet.cli.main import main; sys.exit(main())"


def kvmnet(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=buffered_env())


def buffered_env() -> dict[str, str]:
    """Buffered output, as a user's shell has it (PYTHONUNBUFFERED would hide a lost
    flush)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


@pytest.mark.parametrize("args", [
    ("--help",),
    ("--version",),
    ("validate", str(SEED)),
    ("validate", str(SEED), "--json"),
    ("plan", str(SEED), "-c", "test:///default", "--json"),
    ("render", str(SEED)),                       # long output through a pipe
    ("validate", "/nonexistent/spec.yaml"),       # an error: exit 1, message on stderr
    ("no-such-command",),                         # a usage error
])
def test_same_output_and_code_as_main(args: tuple[str, ...]) -> None:
    fast, plain = kvmnet(VIA_RUN, *args), kvmnet(VIA_MAIN, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == \
        (plain.returncode, plain.stdout, plain.stderr)
    assert fast.stdout or fast.stderr


def test_output_larger_than_a_pipe_arrives_whole(tmp_path: Path) -> None:
    """More than the pipe's 64 KiB buffer: the parent reads while kvmnet writes, and
    nothing is lost at os._exit."""
    nets = "".join(f"  n{i}: {{bridge: vb{i}, ipv4: {{address: 10.{i // 250}.{i % 250}.1/24, "
                   f"dhcp: [10.{i // 250}.{i % 250}.10-10.{i // 250}.{i % 250}.99]}}}}\n"
                   for i in range(300))
    spec = tmp_path / "big.yaml"
    spec.write_text("networks:\n" + nets)
    args = ("plan", str(spec), "-c", "test:///default", "--json")
    fast, plain = kvmnet(VIA_RUN, *args), kvmnet(VIA_MAIN, *args)
    assert fast.returncode == 0 and len(fast.stdout) > 65536
    assert fast.stdout == plain.stdout
    assert len(json.loads(fast.stdout)["actions"]) == 300


def test_atexit_handlers_still_run() -> None:
    code = ("import atexit; atexit.register(lambda: print('atexit ran', flush=True)); "
            + VIA_RUN)
    r = kvmnet(code, "--version")
    assert r.returncode == 0
    assert r.stdout.splitlines()[-1] == "atexit ran"


def test_another_thread_is_waited_for() -> None:
    code = ("import threading, time\n"
            "def late():\n"
            "    time.sleep(0.3); print('thread done', flush=True)\n"
            "threading.Thread(target=late).start()\n" + VIA_RUN)
    r = kvmnet(code, "--version")
    assert r.returncode == 0 and "thread done" in r.stdout


def test_console_script_is_run() -> None:
    """The installed `kvmnet` command goes through entry.run (pyproject's scripts)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert 'kvmnet = "kvmnet.cli.entry:run"' in text


def test_a_profiler_gets_its_results(tmp_path: Path) -> None:
    """`python -m cProfile -o OUT kvmnet ...` writes OUT after the script returns."""
    script, out = tmp_path / "kvmnet_cmd.py", tmp_path / "out.prof"
    script.write_text(VIA_RUN + "\n")
    r = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), str(script),
                        "--version"], capture_output=True, text=True, timeout=60,
                       env=buffered_env())
    assert r.returncode == 0 and r.stdout.startswith("kvmnet ")
    assert out.stat().st_size > 0
