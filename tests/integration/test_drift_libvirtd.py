"""Drift made by hand on the lab's real libvirtd, and what `kvmnet plan` says of it
(issue 19, item 3): a value changed outside kvmnet is labelled so, a change of the spec
is not, and kvmnet's record of what it applied (plan.drift) follows its own live updates
without restarting anything.

Shares the lab: everything is `kvt-ux-*` (bridges `kvtux*`, 10.165.0.0/16), kvmnet runs
with `--scope 'kvt-ux-*'`, and only `kvt-ux-*` objects are removed, before and after.
The hand edits go through libvirt-python, as `virsh net-update` and `virsh net-edit` do.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import pytest
from lxml import etree

from lab.libvirtd import Libvirtd, dnsmasq_pids

pytestmark = pytest.mark.libvirtd

KVMNET = str(Path(sys.executable).parent / "kvmnet")
URI = "qemu:///system"
PREFIX = "kvt-ux-"
NET, BRIDGE = "kvt-ux-drift", "kvtux0"
WEB = "52:54:00:16:05:05"
STRAY = "52:54:00:16:05:09"


def spec_text(lease: str = "12h", more: str = "") -> str:
    return (f"owner: {PREFIX}suite\nnetworks:\n  {NET}:\n    mode: nat\n"
            f"    bridge: {BRIDGE}\n    mtu: 1500\n    ipv4:\n"
            "      address: 10.165.1.1/24\n      dhcp: 10.165.1.100-10.165.1.199\n"
            f"      lease_time: {lease}\n"
            f"      hosts:\n        - {{mac: '{WEB}', name: web, ip: 10.165.1.5}}\n{more}")


@dataclass
class Lab:
    lab: Libvirtd
    raw: libvirt.virConnect
    dir: Path

    def write(self, text: str, name: str = "spec.yaml") -> Path:
        p = self.dir / name
        p.write_text(text)
        return p

    def kvmnet(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([KVMNET, *args, "-c", URI, "--netns", self.lab.netns,
                               "--scope", f"{PREFIX}*"],
                              capture_output=True, text=True, timeout=120, check=False)

    def plan(self, path: Path) -> dict[str, Any]:
        res = self.kvmnet("plan", str(path), "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc

    def apply(self, path: Path) -> dict[str, Any]:
        res = self.kvmnet("apply", str(path), "--yes", "--json")
        doc: dict[str, Any] = json.loads(res.stdout)
        assert res.returncode == 0 and doc["ok"], res.stdout + res.stderr
        return doc

    def net(self) -> libvirt.virNetwork:
        return self.raw.networkLookupByName(NET)


@pytest.fixture(scope="module")
def lab(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with libvirtd.scoped_conn(PREFIX) as raw:   # kvt-ux-* removed before and after
        yield Lab(libvirtd, raw, tmp_path_factory.mktemp("drift"))


def changes(doc: dict[str, Any]) -> list[tuple[str, Any, Any, bool]]:
    (act,) = [a for a in doc["actions"] if not a.get("skipped")]
    return [(c["path"], c["old"], c["new"], c["drift"]) for c in act["changes"]]


def test_drift_made_by_hand_is_labelled_and_kvmnets_own_changes_are_not(lab: Lab) -> None:
    spec = lab.write(spec_text())
    lab.apply(spec)
    assert lab.plan(spec)["changes"] is False
    bridge_before = lab.lab.ns_links()[BRIDGE]["index"]
    pids = dnsmasq_pids(NET)
    assert pids

    # kvmnet's own live update: a reservation comes, no restart, and kvmnet's record
    # follows it (one more define of the persistent config)
    more = lab.write(spec_text(more=f"        - {{mac: '{STRAY}', ip: 10.165.1.9}}\n"),
                     "more.yaml")
    done = lab.apply(more)
    assert done["writes"] == 2
    assert lab.lab.ns_links()[BRIDGE]["index"] == bridge_before and dnsmasq_pids(NET) == pids
    assert lab.plan(more)["changes"] is False
    # ... so the spec dropping it again is the spec's change, not drift
    back = lab.plan(spec)
    assert changes(back) == [(f"ipv4.hosts[{STRAY}]",
                              {"ip": "10.165.1.9", "mac": STRAY, "name": None, "id": None,
                               "lease_time": None}, None, False)]
    assert f"- reservation for {STRAY} 10.165.1.9" in back["actions"][0]["details"]
    lab.apply(spec)

    # by hand: `virsh net-update add ip-dhcp-host --live --config`, then `virsh net-edit`
    # of the MTU
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    lab.net().update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                     libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1,
                     f"<host mac='{STRAY}' name='stray' ip='10.165.1.9'/>", flags)
    root = etree.fromstring(lab.net().XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE).encode())
    root.find("mtu").set("size", "9000")
    lab.raw.networkDefineXML(etree.tostring(root, encoding="unicode"))

    # and the spec changes the lease: one plan, both kinds, each said as it is
    edited = lab.write(spec_text(lease="1h"), "edited.yaml")
    doc = lab.plan(edited)
    assert changes(doc) == [
        ("mtu", 9000, 1500, True),
        ("ipv4.hosts[52:54:00:16:05:09]", {"ip": "10.165.1.9", "mac": STRAY, "name": "stray",
                                           "id": None, "lease_time": None}, None, True),
        ("ipv4.lease_time", {"expiry": 12, "unit": "hours"}, {"expiry": 1, "unit": "hours"},
         False)]
    res = lab.kvmnet("plan", str(edited))
    assert res.returncode == 0, res.stderr
    assert "~ MTU 9000 -> 1500 (changed outside kvmnet)\n" in res.stdout
    assert (f"- reservation for stray ({STRAY}) 10.165.1.9 (changed outside kvmnet)\n"
            in res.stdout)
    assert "~ lease 12h -> 1h\n" in res.stdout
    lab.apply(edited)
    assert lab.plan(edited)["changes"] is False
    live = etree.fromstring(lab.net().XMLDesc(0).encode())
    assert live.find("mtu").get("size") == "1500"
    assert [h.get("mac") for h in live.iterfind("ip/dhcp/host")] == [WEB]
