"""MACs: every guest NIC carries the MAC kvmnet rendered (given, or generated and
stable), so DHCP reservations by MAC hold; with the guests running, plan is empty."""

from __future__ import annotations

import pytest
from lxml import etree

from .e2elab import describe, kvmnet

GIVEN = {"kvt-e2e-br1": "52:54:00:c5:97:8b"}


@pytest.fixture(scope="module")
def rendered_macs(world) -> dict[str, str]:
    out = world.workdir / "render-macs"
    proc = kvmnet("render", str(world.spec_path), "-o", str(out))
    assert proc.returncode == 0, describe(proc)
    macs = {}
    for g in world.domains:
        el = etree.parse(str(out / "guests" / g / "nic0.xml")).getroot()
        macs[g] = el.find("mac").get("address")
    return macs


@pytest.mark.e2e
def test_guest_nics_carry_the_macs_kvmnet_rendered(world, rendered_macs):
    for g, dom in world.domains.items():
        mac = rendered_macs[g]
        assert mac == GIVEN.get(g, mac) and mac.startswith("52:54:00:"), (g, mac)
        stable = kvmnet("mac", "--for", f"{g}/0", "--spec", str(world.spec_path))
        assert stable.stdout.strip() == mac, describe(stable)
        live = etree.fromstring(dom.XMLDesc(0)).find("devices/interface/mac").get("address")
        assert live == mac, f"{g}: libvirt has {live}, kvmnet rendered {mac}"
        assert world.leases[g][1] == mac, f"{g}'s eth0 has {world.leases[g][1]}, not {mac}"
        rc, out = world.guest_run(g, "cat /sys/class/net/eth0/address")
        assert rc == 0 and out.strip() == mac, f"{g}: {out}"


@pytest.mark.e2e
def test_reservation_by_generated_mac_holds(world, rendered_macs):
    xml = etree.fromstring(world.conn.networkLookupByName("kvt-e2e-nat").XMLDesc(0))
    hosts = {h.get("mac"): h.get("ip") for h in xml.iterfind("ip/dhcp/host")}
    assert hosts == {rendered_macs["kvt-e2e-nat1"]: "10.231.10.10"}
    assert world.leases["kvt-e2e-nat1"] == ("10.231.10.10", rendered_macs["kvt-e2e-nat1"])


@pytest.mark.e2e
def test_plan_is_empty_with_the_guests_running(world):
    rc, plan = world.plan(world.spec_path)
    assert rc == 0 and not plan["changes"], plan
