"""The ways the CLI is started: the installed `kvmnet` console script and `python -m
kvmnet` (the boot rollback unit's), both cli.main.run, must print and exit exactly as
cli.main.main does."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"
KVMNET = Path(sys.executable).parent / "kvmnet"
VIA_MAIN = "import sys; from kvmnet.cli.main import main; sys.exit(main())"


def buffered_env() -> dict[str, str]:
    """Buffered output, as a user's shell has it (PYTHONUNBUFFERED would hide a lost
    flush)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env=buffered_env(), check=False)


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
@pytest.mark.parametrize("how", ["console script", "python -m kvmnet"])
def test_same_output_and_code_as_main(how: str, args: tuple[str, ...]) -> None:
    start = [str(KVMNET)] if how == "console script" else [sys.executable, "-m", "kvmnet"]
    got, want = run([*start, *args]), run([sys.executable, "-c", VIA_MAIN, *args])
    assert (got.returncode, got.stdout, got.stderr) == \
        (want.returncode, want.stdout, want.stderr)
    assert got.stdout or got.stderr
    assert "Traceback" not in got.stderr


def test_console_script_is_run() -> None:
    """pyproject's `kvmnet` is cli.client.run: a server when one listens, else cli.main.run."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert tomllib.load(f)["project"]["scripts"] == {"kvmnet": "kvmnet.cli.client:run"}


@pytest.fixture
def big_spec(tmp_path: Path) -> Path:
    """300 networks: a plan or render of it is more than a pipe's 64 KiB buffer."""
    nets = "".join(f"  n{i}: {{bridge: vb{i}, ipv4: {{address: 10.{i // 250}.{i % 250}.1/24, "
                   f"dhcp: [10.{i // 250}.{i % 250}.10-10.{i // 250}.{i % 250}.99]}}}}\n"
                   for i in range(300))
    spec = tmp_path / "big.yaml"
    spec.write_text("networks:\n" + nets)
    return spec


def test_output_larger_than_a_pipe_arrives_whole(big_spec: Path) -> None:
    """The parent reads while kvmnet writes: nothing lost at exit."""
    r = run([str(KVMNET), "plan", str(big_spec), "-c", "test:///default", "--json"])
    assert r.returncode == 0 and len(r.stdout) > 65536
    assert len(json.loads(r.stdout)["actions"]) == 300


def test_a_reader_that_leaves_early_gets_no_traceback(big_spec: Path) -> None:
    """`kvmnet render BIG | head -1`: the pipe closes under kvmnet: exit 1, and nothing
    on stderr (no traceback, no "Exception ignored")."""
    p = subprocess.Popen([str(KVMNET), "render", str(big_spec)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=ROOT, env=buffered_env())
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.readline().startswith(b"==> ")
    p.stdout.close()
    assert p.wait(timeout=60) == 1
    assert p.stderr.read() == b""
    p.stderr.close()


@pytest.mark.parametrize(("given", "want"), [(None, "__all__"), ("", ""), ("logfire", "logfire")])
def test_the_command_skips_pydantic_plugins_unless_told(
        monkeypatch: pytest.MonkeyPatch, given: str | None, want: str) -> None:
    """kvmnet's models use no pydantic plugin: the command sets pydantic's
    PYDANTIC_DISABLE_PLUGINS (no entry-point scan), and keeps a value the user set."""
    from kvmnet.cli.main import run as run_cli

    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "x")  # (restored after the test)
    if given is None:
        monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS")
    else:
        monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", given)
    monkeypatch.setattr(sys, "argv", ["kvmnet", "--version"])
    monkeypatch.setattr(gc, "freeze", lambda: None)  # (this process lives on)
    with pytest.raises(SystemExit) as e:
        run_cli()
    assert e.value.code == 0
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == want
