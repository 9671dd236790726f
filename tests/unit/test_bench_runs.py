"""The benchmark command runs (issue 8). Benchmarks are not timed tests: this only
checks that `python -m bench --quick` (tiny N, one run) works and writes its tables;
no number is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(tmp_path: Path, *args: str) -> tuple[str, dict]:
    out, raw = tmp_path / "BENCHMARKS.md", tmp_path / "results.json"
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", *args, "--out", str(out),
                        "--json", str(raw)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900, check=False)
    assert p.returncode == 0, p.stderr[-4000:]
    return out.read_text(), json.loads(raw.read_text())


def test_quick_scale_and_startup(tmp_path: Path) -> None:
    text, data = _bench(tmp_path, "--only", "scale", "startup")
    assert "<!-- bench:begin" in text and "<!-- bench:end -->" in text
    assert "### 2. validate / plan / render at scale" in text
    assert "### 3. start-up" in text and "`kvmnet --help`" in text
    assert "Machine: " in text and "Reproduce: `bench/run --quick" in text
    assert set(data["scale"]) == {"5", "20"}
    for stage in ("yaml_c", "validate", "plan", "render"):
        assert len(data["scale"]["20"][stage]["s"]) == 1
    assert not data["skipped"]


def test_report_keeps_hand_written_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.report import BEGIN, END, write_report

    path = tmp_path / "B.md"
    path.write_text(f"# mine\n\nbefore\n\n{BEGIN}\nold\n{END}\n\nafter\n")
    results = {"machine": {k: "?" for k in ("cpu", "cores", "memory_gib", "os", "kernel",
                                             "python", "libvirt", "libvirt-python",
                                             "PyYAML", "lxml", "typer", "loadavg_start")},
               "quick": True, "started": "now", "seconds": 1.0, "command": "bench/run",
               "runs": 1, "skipped": {"e2e": "not here"}}
    write_report(results, path)
    text = path.read_text()
    assert text.startswith("# mine\n\nbefore\n") and text.rstrip().endswith("after")
    assert "old" not in text and "- e2e: not here" in text


def test_one_bench_run_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A second bench run waits for the first (both would use the kvb-* names)."""
    import threading
    import time

    monkeypatch.syspath_prepend(str(ROOT))
    from bench import lab_apply

    monkeypatch.setattr(lab_apply, "LOCK", tmp_path / "bench.lock")
    order: list[str] = []
    with lab_apply._one_at_a_time():
        def second() -> None:
            with lab_apply._one_at_a_time():
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)   # time for the second to try; it must still be waiting
        order.append("first done")
    t.join(10)
    assert order == ["first done", "second"]
    assert "another bench run holds" in capsys.readouterr().err


@pytest.mark.libvirtd
def test_quick_apply_on_the_lab(libvirtd: object, tmp_path: Path) -> None:
    """kvmnet, the floor and the virsh loop on the lab's libvirtd, N = 2."""
    text, data = _bench(tmp_path, "--only", "apply", "--peers", "virsh")
    assert "| **kvmnet apply** |" in text and "| virsh loop |" in text
    assert data["apply"]["sizes"]["2"]["writes"] == [{"create": 6, "noop": 0, "change": 2}]


def test_startup_targets_are_issue_16s(monkeypatch: pytest.MonkeyPatch) -> None:
    """`kvmnet --help` <= 0.3 s, `kvmnet validate` of a small file <= 0.5 s (medians)."""
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.report import _startup

    targets: list[tuple[str, str, bool | None]] = []
    _startup({"kvmnet --help": {"s": [0.29, 0.31, 0.28]},
              "kvmnet validate small.yaml": {"s": [0.52, 0.49, 0.51]}}, targets)
    assert [(t, ok) for t, _, ok in targets] == [("`kvmnet --help` ≤ 0.3 s", True),
                                                 ("`kvmnet validate small.yaml` ≤ 0.5 s", False)]


def test_peer_run_counts_are_each_peers_when_they_differ() -> None:
    """Peers measured in a second run (fewer runs, merged into results.json) are not
    reported as having run as often as the first run's."""
    from bench.report import _peer_runs

    same = {"a": {"create": [1.0, 2.0], "failed": []}, "b": {"create": [1.0], "failed": ["x"]}}
    assert _peer_runs(same) == "2 times"
    differ = {"virsh loop": {"create": [1.0] * 5, "failed": []},
              "kcli plan": {"create": [1.0] * 2, "failed": ["crashed"]}}
    assert _peer_runs(differ) == "virsh loop 5 times, kcli plan 3 times"
    assert _peer_runs({}) == "0 times"


def test_restart_gap_reads_ping_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench.restart_gap's gap: the longest run of unanswered pings x 50 ms; None when
    the pings had not come back before they stopped."""
    monkeypatch.syspath_prepend(str(ROOT))
    from bench.restart_gap import gap

    seqs = "".join(f"seq={i}\n" for i in range(20) if i not in (5, 6, 7, 12))
    assert gap(seqs + "20 packets transmitted\n") == 0.15
    assert gap("".join(f"seq={i}\n" for i in range(10)) + "10 packets transmitted\n") == 0.0
    assert gap("seq=0\nseq=1\n20 packets transmitted\n") is None
    assert gap("") is None
