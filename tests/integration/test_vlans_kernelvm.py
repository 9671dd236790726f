"""Guests' VLANs on a real VLAN-aware bridge (issue 20, points 3 and 4), in Debian's
kernel: this machine's has no 802.1Q (tests/lab/kernelvm.py), so tests/e2e/test_8_vlans.py
skips its traffic tests here. kernelvm_vlans.py runs in the kernel VM, on this checkout:
kvmnet's own code puts taps on their VLANs, two "guests" (namespaces behind veth taps)
lease from their own VLAN's dnsmasq and get ARP answers only there, a trunk leases on
both VLANs tagged, a VLAN taken off by hand is seen and put back by the qemu hook's code,
and a tap on a bridge without vlan_filtering is refused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab import kernelvm

ROOT = Path(__file__).resolve().parents[2]
INNER = "tests/integration/kernelvm_vlans.py"

why = kernelvm.available()
pytestmark = pytest.mark.skipif(why is not None, reason=why or "")


def test_guests_vlans_in_a_kernel_with_vlan_filtering(tmp_path: Path) -> None:
    out = tmp_path / "vm"
    script = f"""
cd {ROOT}
.venv/bin/python -m pytest -q -p no:cacheprovider -o addopts= --basetemp=/tmp/kvmvm-pytest \\
    {INNER} -rA
"""
    res = kernelvm.run(script, out, within=1200)
    assert res.rc == 0, res.output[-8000:]
    last = res.output.strip().splitlines()[-1]
    assert "5 passed" in last and "failed" not in last and "skipped" not in last, last
    shutil.rmtree(out, ignore_errors=True)
