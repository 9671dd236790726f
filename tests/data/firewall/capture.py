"""Regenerate live/*.json but *-earlier.json (run as root from the repository: python
tests/data/firewall/capture.py): in a scratch namespace kvt-fw-cap, replay the firewall
commands libvirt 9.0 (iptables) and 11.3 (nftables) run for its test network "default"
(their own test data, fetched by ./scripts/setup: tests/lab/testdata.py), dump
`nft -j list ruleset`; install capture.yaml's forwards with kvmnet's live code, dump
again; for iptables also with libvirt's jumps moved in front of kvmnet's (as after a
FORWARD flush and a libvirtd restart)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[1]))   # tests/: the lab package

from kvmnet.backend.firewall import sync  # noqa: E402
from kvmnet.render.firewall import resolve  # noqa: E402
from kvmnet.spec.load import load  # noqa: E402
from lab.firewall import ns_run, replay, ruleset  # noqa: E402
from lab.testdata import firewall_file  # noqa: E402

NS = "kvt-fw-cap"
SOURCES = {
    "iptables": ["base.args", "nat-default-linux.args"],   # libvirt 9.0's (the installed)
    "nftables": ["base.nftables", "nat-default-linux.nftables"],
}


def dump(name: str) -> None:
    items = ruleset(NS)["nftables"]
    (HERE / "live" / name).write_text(
        '{"nftables": [\n' + ",\n".join(json.dumps(i) for i in items) + "\n]}\n")


def main() -> None:
    spec, _ = load(HERE / "capture.yaml")
    fwds = resolve(spec)
    for backend, files in SOURCES.items():
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "add", NS], check=True)
        try:
            ns_run(NS, ["ip", "link", "add", "virbr0", "type", "bridge"])
            for f in files:
                replay(NS, firewall_file(f), {})
            dump(f"{backend}-libvirt-only.json")
            with tempfile.TemporaryDirectory() as root:
                (Path(root) / "etc/libvirt").mkdir(parents=True)   # where the hook goes
                sync(fwds, NS, Path(root))
            dump(f"{backend}-installed.json")
            if backend == "iptables":
                for chain in ("LIBVIRT_FWO", "LIBVIRT_FWI", "LIBVIRT_FWX"):
                    ns_run(NS, ["iptables", "-w", "-D", "FORWARD", "-j", chain])
                    ns_run(NS, ["iptables", "-w", "-I", "FORWARD", "-j", chain])
                dump(f"{backend}-misplaced.json")
        finally:
            subprocess.run(["ip", "netns", "del", NS], check=True)


if __name__ == "__main__":
    main()
