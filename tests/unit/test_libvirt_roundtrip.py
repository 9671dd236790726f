"""libvirt's own network test data through kvmnet, judged by libvirt's test driver.

For each networkxml2xmlin file libvirt 9.0 accepts:
  A = XMLDesc after defining the original in a fresh test:///default;
  B = XMLDesc after parse -> render (kvmnet) -> define in another fresh one.
A == B ignoring <uuid> and kvmnet's own ownership mark; also our render of
parse(A) equals A, and parse(B) gives the model of parse(A).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lxml import etree

from kvmnet.model.spec import Spec
from kvmnet.parse.network import parse_network
from kvmnet.render.network import KVMNET_NS, build_network, render_network
from kvmnet.render.xmlutil import canonical
from lab.netxml import define_network, fresh_test_driver

libvirt = pytest.importorskip("libvirt")

# the project's shared/ folder lies beside the repository (also in CI's clean clone)
TESTDATA = Path(os.environ.get(
    "KVMNET_LIBVIRT_TESTDATA",
    Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "libvirt-9.0"))
INPUTS = TESTDATA / "networkxml2xmlin"
FILES = sorted(INPUTS.glob("*.xml")) if INPUTS.is_dir() else []
# The inputs libvirt's own suite expects to fail (testdata/README.md).
REJECTED = {
    "routed-network-no-dns-extra-elements": "DNS records in a network with DNS disabled",
    "open-network-with-forward-dev": "forward dev in mode='open'",
    "hostdev-duplicate": "the same PCI device listed twice",
    "passthrough-duplicate": "the same interface listed twice",
}

pytestmark = pytest.mark.skipif(not FILES, reason=f"libvirt test data not found in {INPUTS}")


def _xmldesc(xml: str) -> str:
    """Define xml in a fresh test driver and return its XMLDesc; the driver's stock
    'default' network is removed first when the name is taken."""
    with fresh_test_driver() as conn:
        net = define_network(conn, xml)
        try:
            return str(net.XMLDesc(0))
        finally:
            net.undefine()
            del net


def _without_uuid_and_mark(xml: str) -> str:
    root = etree.fromstring(canonical(xml).encode())
    for el in root.findall("uuid"):
        root.remove(el)
    for meta in root.findall("metadata"):
        for mark in meta.findall(f"{{{KVMNET_NS}}}managed"):
            meta.remove(mark)
        if not len(meta):
            root.remove(meta)
    return canonical(root)


def test_testdata_is_complete() -> None:
    names = {p.stem for p in FILES}
    assert len(names) == 46
    assert set(REJECTED) <= names


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_roundtrip(path: Path) -> None:
    original = path.read_text()
    if path.stem in REJECTED:
        with pytest.raises(libvirt.libvirtError):
            _xmldesc(original)
        pytest.skip(f"libvirt rejects it by design: {REJECTED[path.stem]}")
    a = _xmldesc(original)

    parsed = parse_network(original)
    assert not parsed.managed
    spec = Spec(networks={parsed.name: parsed.network})
    b = _xmldesc(etree.tostring(render_network(spec, parsed.name)).decode())
    assert _without_uuid_and_mark(b) == _without_uuid_and_mark(a)

    # Our output equals libvirt's, and libvirt's output reads back to the same model.
    from_a = parse_network(a)
    ours = build_network(from_a.name, from_a.network, uuid=from_a.uuid, managed=False)
    assert canonical(ours) == canonical(a)
    assert parse_network(b).network == from_a.network
