"""When plan reads the firewall: a spec with forwards, or any trace of kvmnet's (issue 8:
a no-op apply of a spec without forwards runs no nft when kvmnet has none installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmnet.backend.forward_files import HOOK_FILE, STATE_FILE, has_forward_state
from kvmnet.service.ops import _forwards_needed
from kvmnet.spec.load import load_text

PLAIN = "networks:\n  n1: {bridge: vb1, ipv4: {address: 10.9.0.1/24}}\n"
WITH_FORWARD = ("networks:\n  n1:\n    bridge: vb1\n    ipv4: {address: 10.9.0.1/24}\n"
                "    forwards: [{proto: tcp, host_port: 8080, address: 10.9.0.5, "
                "guest_port: 80}]\n")


def test_no_trace_no_read(tmp_path: Path) -> None:
    assert not has_forward_state(tmp_path)
    assert not _forwards_needed(load_text(PLAIN)[0], tmp_path)


@pytest.mark.parametrize("trace", [STATE_FILE, STATE_FILE.rsplit(".", 1)[0] + ".lock",
                                   HOOK_FILE])
def test_any_trace_means_read(tmp_path: Path, trace: str) -> None:
    """The lock stays when a sync that removed every forward did not finish (its rules
    may still be there): the next plan must read the firewall to remove them."""
    p = tmp_path / trace
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("")
    assert has_forward_state(tmp_path)
    assert _forwards_needed(load_text(PLAIN)[0], tmp_path)


def test_a_spec_with_forwards_reads(tmp_path: Path) -> None:
    spec, _ = load_text(WITH_FORWARD)
    assert any(n.forwards for n in spec.networks.values())
    assert _forwards_needed(spec, tmp_path)
