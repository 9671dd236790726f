"""Port forwards' effect modules import in one direction (issue 16): hook -> firewall ->
forward_files, never back. import-linter's contracts (test_architecture) forbid cycles
and keep pure layers off effects; this pins which way these three go. Every import
counts, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "kvmnet"


def imports(module: str) -> set[str]:
    path = SRC.joinpath(*module.split(".")[1:]).with_suffix(".py")
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def reaches(module: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imports(module) if m.startswith(forbidden))


@pytest.mark.parametrize(("module", "below"), [
    ("kvmnet.backend.forward_files", ("kvmnet.backend.firewall", "kvmnet.backend.hook",
                                      "kvmnet.backend.nft")),
    ("kvmnet.backend.firewall", ("kvmnet.backend.hook",)),
])
def test_backend_imports_go_one_way(module: str, below: tuple[str, ...]) -> None:
    assert reaches(module, below) == []


def test_the_checker_sees_imports() -> None:
    """(the test above could not fail if `imports` found nothing)"""
    assert "kvmnet.backend.firewall" in imports("kvmnet.backend.hook")
    assert "kvmnet.backend.forward_files" in imports("kvmnet.backend.firewall")
