"""kvmnet relies on what `qemu:///system` gives through the public API, whichever daemons
serve it (libvirtd, or virtqemud + virtnetworkd: issue 18, item 3). Leases come from
virNetworkGetDHCPLeases, the socket is libvirt's own business; the one path kvmnet uses
under libvirt's folders is the network hook, in libvirt's configuration folder, and that
is checked before anything changes."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import kvmnet
from kvmnet.backend import firewall
from kvmnet.backend.forward_files import HOOK_FILE, STATE_FILE
from kvmnet.errors import LiveError
from kvmnet.render.firewall import resolve
from kvmnet.spec.load import load_text

SRC = Path(kvmnet.__file__).parent
WITH_FORWARD = ("networks:\n  n1:\n    bridge: vb1\n    ipv4: {address: 10.9.0.1/24}\n"
                "    forwards: [{proto: tcp, host_port: 8080, address: 10.9.0.5, "
                "guest_port: 80}]\n")
LIBVIRT_PATHS = ("/run/libvirt", "/var/run/libvirt", "/var/lib/libvirt", "libvirt-sock",
                 "/etc/libvirt", "etc/libvirt")
HOOK_MODULE = SRC / "backend" / "forward_files.py"


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants a module's code uses (docstrings and other bare string
    statements left out: they explain, they are not paths the code opens)."""
    tree = ast.parse(path.read_text())
    bare = {id(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in bare]


def test_no_libvirt_path_is_assumed_outside_the_hook() -> None:
    found = [f"{p.relative_to(SRC)}:{line}: {text!r}"
             for p in sorted(SRC.rglob("*.py")) if p != HOOK_MODULE
             for line, text in _code_strings(p) if any(x in text for x in LIBVIRT_PATHS)]
    assert not found, "\n".join(found)
    hook = [text for _, text in _code_strings(HOOK_MODULE) if "libvirt" in text]
    assert "etc/libvirt/hooks/network.d/kvmnet-forwards" in hook


def _no_rules(*_: Any, **__: Any) -> list[str]:
    raise AssertionError("rules installed before the hook folder was checked")


def test_forwards_without_libvirt_config_folder_change_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firewall, "install_rules", _no_rules)
    fwds = resolve(load_text(WITH_FORWARD)[0])
    with pytest.raises(LiveError) as e:
        firewall.sync(fwds, None, tmp_path)
    assert f"{tmp_path}/etc/libvirt does not exist" in str(e.value)
    assert "virtnetworkd" in str(e.value) and "nothing was changed" in str(e.value)
    assert list(tmp_path.rglob("*")) == []
    assert not (tmp_path / STATE_FILE).exists()


def test_forwards_hook_goes_below_an_existing_config_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(firewall, "install_rules", lambda *_a, **_k: ["rules"])
    (tmp_path / "etc/libvirt").mkdir(parents=True)
    fwds = resolve(load_text(WITH_FORWARD)[0])
    msg = firewall.sync(fwds, None, tmp_path)
    assert "hook" in msg and (tmp_path / HOOK_FILE).is_file()   # hooks/network.d/ made
    assert (tmp_path / STATE_FILE).is_file()
