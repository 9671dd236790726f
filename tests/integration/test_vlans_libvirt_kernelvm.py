"""Guests on VLANs through libvirt itself (issue 20, point 4), in a kernel that has
802.1Q: tests/e2e/test_8_vlans.py's VLAN tests, in tests/lab/kernelvm.py's VM.

This machine's kernel has no 802.1Q and no VLAN filtering on bridges, so test_8_vlans
skips its VLAN tests here. In Debian's kernel, booted in QEMU on this machine's own
files, they run: the lab libvirtd started in the VM, the VLAN-aware bridge with its
trunk to a LAN namespace (a DHCP server on VLAN 100 and one on 200), and libvirt's QEMU
guests on their VLANs (emulated twice, TCG inside TCG: each boots in a minute or two,
so the wait for a lease is longer there, $KVMNET_GUEST_BOOT). Each access guest leases
from its own VLAN's server and reaches only its own VLAN, the trunk guest leases on
both VLANs tagged, a VLAN taken off a tap by hand is drift that apply puts back, the
guests keep their VLANs after a libvirtd restart and their own restarts, and an empty
spec detaches them, removes the network and takes kvmnet's hook away.

Where libvirt is 9 (the Debian 12 leg) kvmnet sets the taps' VLANs: at attach, and at
every guest start through its qemu hook. scripts/test runs this file in the Debian 13
leg too (tests/lab/trixie.py): the VM then shares that root, whose libvirt 11.3 sets
the VLANs from each NIC's <vlan>, and kvmnet writes no hook.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from lab import kernelvm

ROOT = Path(__file__).resolve().parents[2]
INNER = "tests/e2e/test_8_vlans.py"

why = kernelvm.available()
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")


def vlan_tests() -> list[str]:
    """test_8_vlans's tests that need 802.1Q (they call need_vlans), by name, from its
    source: a new one is run here too. The others (a refusal, a trunk guest's own
    VLAN interfaces, libvirt running the hook) need no VLAN in the host's kernel and
    run on the host's legs."""
    text = (ROOT / INNER).read_text()
    blocks = re.split(r"^def ", text, flags=re.M)[1:]
    return [b.split("(", 1)[0] for b in blocks
            if b.startswith("test_") and "need_vlans(vl)" in b]


def failures(output: str) -> str:
    """The inner run's assertion lines and summary: what a failure report needs."""
    lines = output.splitlines()
    keep = [ln for ln in lines if ln.startswith(("E ", ">", "____", "FAILED", "ERROR"))]
    return "\n".join(keep[:300] + ["..."] + lines[-15:])


def test_guests_on_vlans_through_libvirt_in_a_kernel_with_802_1q(tmp_path: Path) -> None:
    tests = vlan_tests()
    assert len(tests) >= 4, tests
    out = tmp_path / "vm"
    ids = " ".join(f"{INNER}::{t}" for t in tests)
    script = f"""
cd {ROOT}
KVMNET_GUEST_BOOT=900 {sys.executable} -m pytest -q -p no:cacheprovider -o addopts= \\
    --basetemp=/tmp/kvmvm-pytest -rA {ids}
"""
    res = kernelvm.run(script, out, within=2700, memory_mb=3072)
    assert res.rc == 0, failures(res.output)
    passed = re.findall(r"^PASSED \S+::(test_\w+)", res.output, flags=re.M)
    assert sorted(passed) == sorted(tests), failures(res.output)
    assert not re.search(r"^SKIPPED", res.output, flags=re.M), failures(res.output)
    shutil.rmtree(out, ignore_errors=True)
