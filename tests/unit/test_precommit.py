"""The pre-commit hooks (.pre-commit-config.yaml) run the same static checks as the suite:
ruff and mypy with scripts/test's own command lines, import-linter as
tests/unit/test_architecture.py runs it. A check added to one and not the other fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _hooks() -> dict[str, dict[str, object]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    return {h["id"]: h for h in repo["hooks"]}


def _suite_commands() -> dict[str, str]:
    """The static checks scripts/test runs: `echo "== NAME";  COMMAND` lines."""
    text = (ROOT / "scripts" / "test").read_text()
    found = dict(re.findall(r'^echo "== (ruff|mypy)";\s+(\S.*)$', text, re.M))
    arch = (ROOT / "tests" / "unit" / "test_architecture.py").read_text()
    assert '"lint-imports"' in arch and '"--no-cache"' in arch
    found["import-linter"] = ".venv/bin/lint-imports --no-cache"
    return found


def test_hooks_are_the_suites_checks() -> None:
    hooks = _hooks()
    suite = _suite_commands()
    assert set(suite) == {"ruff", "mypy", "import-linter"}, suite
    assert {k: h["entry"] for k, h in hooks.items()} == suite
    for hook in hooks.values():   # whole-program checks: never only the staged files
        assert hook["language"] == "system" and hook["pass_filenames"] is False, hook


def test_config_is_valid_for_pre_commit() -> None:
    exe = Path(sys.executable).parent / "pre-commit"
    assert exe.exists(), "pre-commit is missing: run ./scripts/setup"
    r = subprocess.run([str(exe), "validate-config", ".pre-commit-config.yaml"], cwd=ROOT,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
