"""Time to a usable NAT network with a leased guest: kvmnet vs the same steps by hand
with virsh (issue 8, item 4).

Both paths make the same network (kvb-e2e, a DHCP range and the guest's
reservation), then boot the same tiny lab guest (tests/lab/guest.py: QEMU TCG,
busybox initramfs) with a NIC on it and wait until its serial console reports
the reserved lease. The guest's boot is the same on both paths and dominates, so
the network part is reported on its own too. Booting is slow: few runs.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import KVMNET, ROOT, bench_env, run
from bench.lab_apply import NETNS, URI, cleanup, lab

NET, GUEST = "kvb-e2e", "kvb-e2e-g1"
MAC, IP = "52:54:00:fb:00:01", "10.250.250.10"
SPEC = f"""\
networks:
  {NET}:
    mode: nat
    bridge: kvbe2e
    ipv4:
      address: 10.250.250.1/24
      dhcp: 10.250.250.100-10.250.250.199
      hosts:
        - {{mac: "{MAC}", ip: {IP}, name: {GUEST}}}
"""


def _kvmnet(work: Path) -> None:
    (work / "e2e.yaml").write_text(SPEC)
    run([KVMNET, "apply", str(work / "e2e.yaml"), "-c", URI, "--netns", NETNS, "--yes",
         "--scope", "kvb-*"], env=bench_env()).check()


def _virsh(work: Path) -> None:
    from kvmnet.model.derive import dhcp_hosts
    from kvmnet.render.network import build_network
    from kvmnet.render.xmlutil import pretty
    from kvmnet.spec.load import load_text

    spec, _ = load_text(SPEC)
    xml = work / "e2e.xml"
    xml.write_text(pretty(build_network(NET, spec.networks[NET], hosts=dhcp_hosts(spec, NET),
                                        managed=False)))  # what an admin writes by hand
    for step in (["net-define", str(xml)], ["net-start", NET], ["net-autostart", NET]):
        run(["virsh", "-q", "-c", URI, *step]).check()


def _guest_until_lease(timeout: float) -> float:
    """Boot the guest, wait for its lease; seconds from boot to lease."""
    import libvirt

    from lab.guest import start_guest, wait_for_serial

    conn = libvirt.open(URI)
    try:
        t0 = time.perf_counter()
        dom, log = start_guest(conn, GUEST, [{"network": NET, "mac": MAC}])
        try:
            wait_for_serial(log, re.compile(rf"KVMNET-LEASE {re.escape(IP)} "), timeout,
                            alive=dom.isActive)
            return time.perf_counter() - t0
        finally:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()


def measure(runs: int, log: Callable[[str], None], timeout: float = 180.0) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from lab.guest import guest_files

    guest_files()                                     # build the initramfs once, untimed
    out: dict[str, Any] = {}
    paths = {"kvmnet apply": _kvmnet, "virsh by hand": _virsh}
    with lab(), tempfile.TemporaryDirectory(prefix="kvb-e2e-") as tmp:
        for r in range(runs):
            for name, make in paths.items():
                log(f"e2e {name} run {r + 1}/{runs}")
                cleanup()
                t0 = time.perf_counter()
                make(Path(tmp))
                net_s = time.perf_counter() - t0
                boot_s = _guest_until_lease(timeout)
                row = out.setdefault(name, {"network_s": [], "total_s": []})
                row["network_s"].append(net_s)
                row["total_s"].append(net_s + boot_s)
    return out
