"""Golden files of the plan a person reads (issue 19, item 3): `kvmnet plan`'s text for
every plan case in tests/cases/, as a pipe gets it, in tests/data/plan-text/CASE.txt.
KVMNET_REGEN_GOLDEN=1 rewrites them (look at the diff before committing)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kvmnet.cli import output
from lab.golden import assert_golden
from lab.plancases import Case, case_dirs

GOLDEN = Path(__file__).parents[1] / "data" / "plan-text"


def plan_text(case: Case) -> str:
    buf = io.StringIO()
    saved = output.out
    output.out = output.Out(file=buf, force_terminal=False, width=100)
    try:
        output.show_plan(case.plan(case.backend()), "test:///default")
    finally:
        output.out = saved
    return buf.getvalue()


def test_every_case_reads_as_its_golden_text(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {f"{d.name}.txt": plan_text(Case.load(d)) for d in case_dirs()}
    assert_golden(GOLDEN, texts)


def test_the_golden_text_reads_as_a_person_would_say_it() -> None:
    """A few lines spelt out here, so that a regenerated golden file that lost them fails."""
    text = (GOLDEN / "upd-reservation-change.txt").read_text()
    assert "~ reservation for a (52:54:00:10:01:01) 10.10.1.11 -> 10.10.1.21" in text
    assert "Plan: 0 to add, 1 to change, 0 to destroy" in text
    assert "ipv4.hosts" not in text
    text = (GOLDEN / "guest-change-model-only.txt").read_text()
    assert "~ model virtio -> e1000 (at the guest's next boot)" in text
