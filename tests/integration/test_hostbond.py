"""Bonds and VLAN sub-interfaces moved in live with the host-bridge transaction (issue
20, point 2; point 4's bond failover), on a real kernel that has them.

This machine's kernel is built without bonding and 802.1Q (tests/lab/kernelvm.py), so
the scenarios of kernelvm_hostbond.py run in Debian's kernel in a QEMU VM, on this
checkout's own files: apply, confirm, rollback by timeout, by the watchdog after
SIGKILL of apply, at boot, and an active-backup failover under a ping stream. Each
asserts there what test_hostbridge.py asserts for a NIC (the exact state before, the
files byte for byte); here the VM's pytest must pass, and its timings are kept for
BENCHMARKS.md ($KVMNET_HB_TIMINGS, when set, gets them as JSON lines).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from lab import kernelvm

ROOT = Path(__file__).resolve().parents[2]
INNER = "tests/integration/kernelvm_hostbond.py"

why = kernelvm.available()
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")


def test_bond_and_vlan_transaction_in_a_kernel_with_bonding(tmp_path: Path) -> None:
    out = tmp_path / "vm"
    script = f"""
cd {ROOT}
export KVMNET_HB_TIMINGS=/kvmvm/timings.jsonl
.venv/bin/python -m pytest -q -p no:cacheprovider -o addopts= --basetemp=/tmp/kvmvm-pytest \\
    {INNER} -rA
"""
    res = kernelvm.run(script, out, within=1800)
    timings = out / "timings.jsonl"
    lines = timings.read_text().splitlines() if timings.exists() else []
    if os.environ.get("KVMNET_HB_TIMINGS") and lines:
        with open(os.environ["KVMNET_HB_TIMINGS"], "a") as f:
            f.write("\n".join(lines) + "\n")
    assert res.rc == 0, res.output[-8000:]
    assert " passed" in res.output and "failed" not in res.output.splitlines()[-1]
    names = {json.loads(x)["test"] for x in lines}
    assert {"bond migration", "bond rollback by timeout", "bond rollback after SIGKILL of "
            "apply", "bond undo at boot", "active-backup failover",
            "NIC migration, no bond (baseline)", "active-backup failover, QEMU guest"
            } <= names, lines
    shutil.rmtree(out, ignore_errors=True)
