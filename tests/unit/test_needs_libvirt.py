"""Which specs talk to libvirt: a spec with only `host:` never does (a host without
libvirtd can still move its NIC into a bridge), and then nothing of libvirt's side is
read or changed, kvmnet's qemu hook included; a spec with nothing in it does, because
it says "remove what this owner has", and that is in libvirt."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmnet.backend.libvirt import connect
from kvmnet.service.ops import needs_libvirt, read_live
from kvmnet.spec.load import load_text

NOWHERE = "qemu+unix:///system?socket=/nonexistent/kvmnet-no-libvirtd"


@pytest.mark.parametrize(("text", "needed"), [
    ("owner: a\n", True),
    ("networks: {}\n", True),
    ("owner: a\nhost: {}\n", True),
    ("networks:\n  n1: {mode: isolated, bridge: kvtn0}\n", True),
    ("guests:\n  g: {interfaces: [{bridge: br0}]}\n", True),
    ("host:\n  bridges:\n    br0: {ports: [eth0]}\n", False),
    ("host:\n  bonds:\n    bond0: {ports: [eth0, eth1], mode: active-backup}\n", False),
    ("host:\n  vlans:\n    eth0.7: {link: eth0, id: 7}\n", False),
])
def test_which_specs_need_libvirt(text: str, needed: bool) -> None:
    spec = load_text(text, "s.yaml")[0]
    assert needs_libvirt(spec) is needed


def test_without_libvirt_no_vlan_is_read_and_no_hook_is_touched(tmp_path: Path) -> None:
    """A host-only spec's read of the live state (no libvirt asked) leaves libvirt's
    side unknown, even where kvmnet's qemu hook file exists: plan then neither reads
    taps nor removes the hook (an apply of a host-only spec once raised here)."""
    hook = tmp_path / "etc/libvirt/hooks/qemu.d/kvmnet-vlans"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\n")
    with connect(NOWHERE, needed=False) as conn:
        live = read_live(conn, root=tmp_path, host_if=lambda _: False, firewall=False,
                         vlans=lambda _: True)
    assert live.vlans is None
    assert live.networks == {} and live.domains == {}
    assert hook.exists()
