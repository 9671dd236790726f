"""`kvmnet status` and `kvmnet confirm` as an admin sees them after an apply that moved a
NIC into a bridge (issue 19, item 7): the pending change with its bridges, when it rolls
back (a time and a countdown), the watchdog's pid and the journal; confirm says how much
time was left and stops the watchdog. The journal is the real record apply writes; the
watchdog a real process (a sleep) registered as apply's watchdog registers itself."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvmnet.apply.bridge import store
from kvmnet.apply.bridge.journal import Journal, Registration, Step
from kvmnet.apply.bridge.migrate import Link
from kvmnet.apply.bridge.watchdog import start_time
from kvmnet.cli.main import main


@pytest.fixture
def watchdog() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def pending(root: Path, pid: int, left: float = 100.0) -> None:
    links = (Link("br0", False), Link("enp2s0", True, mac="52:54:00:aa:bb:cc"))
    j = Journal(txid="tx1", state="waiting", steps=(Step(bridge="br0", links=links, files=()),),
                netns=None, apply_pid=None, apply_start=None, root=str(root),
                created=time.time(), timeout=120.0, deadline=time.monotonic() + left,
                persisted=None, rollback_now=None, errors=())
    store.write_journal(root, j)
    store.register(root, Registration(pid=pid, start=start_time(pid), txid="tx1"))


def test_status_with_nothing_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                     ) -> None:
    assert main(["status", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ("No host network change is waiting for confirm (no "
                                       "host change is waiting for confirm).\n")
    assert main(["status", "--root", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"kvmnet": 1, "pending": None, "last": None}


def test_status_counts_down_and_confirm_stops_the_watchdog(
        tmp_path: Path, watchdog: subprocess.Popen[bytes],
        capsys: pytest.CaptureFixture[str]) -> None:
    pending(tmp_path, watchdog.pid)
    assert main(["status", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "A host network change is waiting for confirm:"
    assert lines[1] == "  bridges:   br0 (ports enp2s0)"
    assert lines[2] == "  state:     waiting"
    assert re.fullmatch(r"  rollback:  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in 1m[34]\ds\) unless "
                        r"confirmed", lines[3]), lines[3]
    assert lines[4] == f"  watchdog:  pid {watchdog.pid} (running)"
    assert lines[5] == f"  journal:   {tmp_path}/run/kvmnet/host-tx.json"
    assert f"kvmnet confirm --root {tmp_path}" in lines[6]
    assert main(["status", "--root", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["pending"]
    assert (doc["bridges"], doc["watchdog_pid"], doc["watchdog_running"]) == (
        ["br0"], watchdog.pid, True)
    assert 90 < doc["seconds_left"] <= 100 and abs(doc["deadline"] - time.time() - 100) < 10

    assert main(["confirm", "--root", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert re.fullmatch(r"Confirmed with 1m[34]\ds to spare: host bridge change \(br0\) kept; "
                        r"the watchdog is stopped.\n", said), said
    assert watchdog.wait(timeout=10) == -15  # SIGTERM
    assert main(["status", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(
        "No host network change is waiting for confirm (the last host change was confirmed "
        "(kvmnet confirm) at ")


def test_status_says_when_the_watchdog_is_gone(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.Popen(["sleep", "300"])
    pending(tmp_path, proc.pid)   # (registered with its start time while it runs)
    proc.kill()
    proc.wait()
    assert main(["status", "--root", str(tmp_path)]) == 0
    assert f"  watchdog:  pid {proc.pid} (NOT running)" in capsys.readouterr().out.splitlines()
