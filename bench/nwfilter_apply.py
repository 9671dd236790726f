"""Guest firewalls (issue 21, item 4): apply a change to a rule set that 50 running NICs
use, on the lab's real libvirtd (`python -m bench.nwfilter_apply [RUNS]`, as root, under
/run/lock/kvmnet-suite.lock). Not in bench/run (it boots guests for a few minutes); its
numbers are in BENCHMARKS.md, "Guest firewalls".

Real QEMU guests (TCG): 2 guests with 25 NICs each on one routed network, all 50 NICs
using the set kvb-fw-web. Timed: `kvmnet apply` of the spec with one port of the set
changed (the whole process, as users run it) and the nwfilter redefinition inside it
(libvirt re-instantiating the rules of the 50 NICs). Checked each run: apply's only write
is that redefinition, the NICs' own chains are the only part of the lab namespace's
ruleset that changed, and no other nwfilter changed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import KVMNET, ROOT

PREFIX, NET, SET = "kvb-fw-", "kvb-fw-net", "kvb-fw-web"
GUESTS, NICS = 2, 25
OWNER = "kvb-fw"   # one owner for both files (the default owner is the file's path)
ARGS = ["-c", "qemu:///system", "--netns", "kvmnet-lab", "--scope", f"{PREFIX}*", "--yes",
        "--json"]


def spec(port: int) -> dict[str, Any]:
    return {"owner": OWNER, "firewalls": {SET: {"default_in": "drop", "rules": [
                {"direction": "in", "proto": "udp", "ports": 68},
                {"direction": "in", "proto": "tcp", "ports": port, "peer": "10.155.0.0/16"}]}},
            "networks": {NET: {"mode": "route", "bridge": "kvbf-br0", "ipv4": {
                "address": "10.155.200.1/24", "dhcp": "10.155.200.100-10.155.200.250"}}},
            "guests": {f"{PREFIX}{g}": {"interfaces": [
                {"network": NET, "mac": f"52:54:00:15:{g:02x}:{i:02x}", "firewalls": [SET]}
                for i in range(NICS)]} for g in range(GUESTS)}}


def apply(path: Path, d: dict[str, Any]) -> dict[str, Any]:
    path.write_text(yaml.safe_dump(d))
    p = subprocess.run([KVMNET, "apply", str(path), *ARGS], capture_output=True, text=True,
                       timeout=600, check=False)
    out = json.loads(p.stdout)
    if p.returncode != 0 or not out["ok"]:
        raise RuntimeError(p.stdout + p.stderr)
    return out  # type: ignore[no-any-return]


def outside_nic_chains(ruleset: dict[str, Any]) -> Any:
    """The ruleset (handles and counters left out) without the per-NIC chains nwfilter
    makes and the jumps to them (all name the NIC's tap, vnetN)."""
    from lab.firewall import normalized

    return normalized(ruleset, ("vnet",))


def ruleset() -> dict[str, Any]:
    p = subprocess.run(["ip", "netns", "exec", "kvmnet-lab", "nft", "-j", "list", "ruleset"],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)  # type: ignore[no-any-return]


def measure(runs: int = 5) -> dict[str, Any]:
    from bench.lab_apply import _one_at_a_time

    with _one_at_a_time():  # the apply bench removes every kvb-* network it finds
        return _measure(runs)


def _measure(runs: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    import libvirt

    from lab.guest import domain_xml, guest_files, serial_log_path
    from lab.libvirtd import Libvirtd, remove_objects

    lab = Libvirtd().start()
    conn = lab.open()
    work = Path(tempfile.mkdtemp(prefix="kvb-fw-"))
    try:
        remove_objects(conn, PREFIX)
        apply(work / "net.yaml", {"owner": OWNER, "networks": spec(22)["networks"]})
        kernel, initrd = guest_files()
        for g in range(GUESTS):
            name = f"{PREFIX}{g}"
            conn.defineXML(domain_xml(name, kernel, initrd, [], serial_log_path(name)))
        apply(work / "s.yaml", spec(22))
        for g in range(GUESTS):
            conn.lookupByName(f"{PREFIX}{g}").create()
        time.sleep(5)
        taps = sum(x.count("<target dev='vnet") for x in (
            conn.lookupByName(f"{PREFIX}{g}").XMLDesc(0) for g in range(GUESTS)))
        walls, redefines = [], []
        for i in range(runs):
            others = {f.name(): f.XMLDesc(0) for f in conn.listAllNWFilters()
                      if f.name() != f"kvmnet-set-{SET}"}
            before = outside_nic_chains(ruleset())
            t0 = time.monotonic()
            out = apply(work / "s.yaml", spec(2200 + i))
            walls.append(time.monotonic() - t0)
            done = [r for r in out["results"] if r["status"] == "done"]
            assert [(r["kind"], r["target"]) for r in done] == [
                ("nwfilter.redefine", f"nwfilter/kvmnet-set-{SET}")], done
            assert out.get("writes", 1) == 1, out.get("writes")
            redefines.append(done[0]["seconds"])
            after = outside_nic_chains(ruleset())
            assert after == before, ("a rule outside the NICs' chains changed:\n"
                                     + "\n".join([*(f"- {x}" for x in before - after),
                                                   *(f"+ {x}" for x in after - before)]))
            assert {f.name(): f.XMLDesc(0) for f in conn.listAllNWFilters()
                    if f.name() != f"kvmnet-set-{SET}"} == others
        return {"nics": taps, "guests": GUESTS, "runs": runs,
                "apply_median_s": round(statistics.median(walls), 3),
                "apply_max_s": round(max(walls), 3),
                "redefine_median_s": round(statistics.median(redefines), 3),
                "redefine_max_s": round(max(redefines), 3),
                "libvirt": conn.getLibVersion()}
    finally:
        try:
            remove_objects(conn, PREFIX)
            for f in conn.listAllNWFilters():
                if f.name().startswith("kvmnet-") and PREFIX in f.XMLDesc(0) + f.name():
                    try:
                        f.undefine()
                    except libvirt.libvirtError:
                        pass
            for f in conn.listAllNWFilters():
                if f.name() == f"kvmnet-set-{SET}":
                    f.undefine()
        finally:
            conn.close()
            lab.stop()


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5), indent=2))
