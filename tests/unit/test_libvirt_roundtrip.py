"""libvirt's own network test data through kvmnet, judged by libvirt's test driver.

The data is that of the installed libvirt (fetched by ./scripts/setup from its Debian
source package, tests/lab/testdata.py). For each networkxml2xmlin file it accepts:
  A = XMLDesc after defining the original in a fresh test:///default;
  B = XMLDesc after parse -> render (kvmnet) -> define in another fresh one.
A == B ignoring <uuid> and kvmnet's own ownership mark; also our render of
parse(A) equals A, and parse(B) gives the model of parse(A). The inputs libvirt's own
networkxml2xmltest.c expects to fail (DO_TEST_PARSE_ERROR) must fail here too.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
from lxml import etree

from kvmnet.model.spec import Spec
from kvmnet.parse.network import parse_network
from kvmnet.render.network import KVMNET_NS, build_network, render_network
from kvmnet.render.xmlutil import canonical
from lab import testdata
from lab.netxml import define_network, fresh_test_driver

_SOURCE = testdata.installed_or_none()
FILES = sorted((_SOURCE.path / "networkxml2xmlin").glob("*.xml")) if _SOURCE else []
# Without the data, one case that fails with "run ./scripts/setup" (never a skip).
CASES = FILES or [Path("testdata-missing")]


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
    """Every input is one libvirt's own test runs, and every input it expects to
    succeed has its expected output."""
    src = testdata.installed()
    names = {p.stem for p in FILES}
    assert names and names <= src.tested_names()
    assert src.tested_names() - src.expected_failures() <= names   # none lost on the way
    outputs = {p.stem for p in (src.path / "networkxml2xmlout").glob("*.xml")}
    assert names - src.expected_failures() <= outputs


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_roundtrip(path: Path) -> None:
    src = testdata.installed()   # fails with "run ./scripts/setup" when missing or stale
    original = path.read_text()
    if path.stem in src.expected_failures():
        # libvirt rejects it by design (a parse error in its own test): so must its driver
        with pytest.raises(libvirt.libvirtError):
            _xmldesc(original)
        return
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


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_what_import_keeps_in_xml_extra_plans_as_it_is(path: Path) -> None:
    """A network of libvirt's test data as `kvmnet import` writes it: what it keeps in
    xml_extra changes none of the keys kvmnet models (plan would refuse it, issue 17),
    and the plan of a new one shows every element of it."""
    from kvmnet.model.live import LiveState
    from kvmnet.plan import make_plan

    src = testdata.installed()
    if path.stem in src.expected_failures():
        return
    parsed = parse_network(path.read_text())
    spec = Spec(networks={parsed.name: parsed.network})
    plan = make_plan(spec, LiveState(uri="test:///default", networks={}, domains={}))
    assert not [f for f in plan.findings if "xml_extra" in f.message], plan.findings
    (create,) = [a for a in plan.actions if a.kind == "network.create"]
    shown = [d for d in create.details if d.startswith("+ xml_extra[")]
    assert len(shown) == sum(map(len, parsed.network.xml_extra.values()))
