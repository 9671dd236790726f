"""Bounded fuzzing (issue 9, item 7), with hypothesis: about 20 s in the suite.

- The YAML loader, on text built from YAML's own syntax, on random bytes (through
  the file reader and decoder) and on mutated example specs: a Spec, or SpecError
  whose every problem has a position; never another exception.
- The libvirt network XML parser, on libvirt's own test networks (networkxml2xmlin of
  the installed libvirt's source package, fetched by ./scripts/setup: tests/lab/testdata)
  mutated at the tree level (elements dropped, doubled, renamed, attributes set to
  odd values) and at the byte level: a ParsedNetwork or NetworkXMLError, never
  another exception; what it accepts renders back (build_network) without a crash;
  and when libvirt's test driver accepts the mutant too, parse -> render of libvirt's
  own XMLDesc of it is a no-op (same XML, same model).

- Hostile values (issue 17), generated at every place of the spec that takes them
  (tests/lab/hostile.py walks the models): numbers YAML 1.1 misreads, interface names
  ending in '+', colliding NetworkManager profiles, addresses with an IPv6 scope id,
  libvirt URIs that run a program or read a file: each refused at its own LINE:COL.

KVMNET_FUZZ_SECONDS (default 20) scales the number of examples for a longer hunt.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from kvmnet.errors import SpecError
from kvmnet.model.spec import Lease
from kvmnet.model.types import PortRange
from kvmnet.parse.network import parse_network
from kvmnet.render.network import NetworkXMLError, build_network
from kvmnet.render.xmlutil import canonical
from kvmnet.spec.check import check
from kvmnet.spec.load import decode, load, load_text
from lab import hostile, testdata

ROOT = Path(__file__).resolve().parents[2]
BUDGET = float(os.environ.get("KVMNET_FUZZ_SECONDS", "20"))


SCALE = BUDGET / 20


def fuzz_settings(examples: int) -> settings:
    """`examples` fill about their share of the 20 s on the project's machines; hypothesis
    has no time limit of its own, so KVMNET_FUZZ_SECONDS scales the counts."""
    return settings(max_examples=max(20, int(examples * SCALE)), deadline=None,
                    database=None, suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------ the YAML loader

def loader_contract(text: str) -> None:
    try:
        spec, pos = load_text(text, "fuzz.yaml")
    except SpecError as e:
        assert e.problems
        for p in e.problems:
            assert p.file == "fuzz.yaml" and p.line >= 1 and p.col >= 1, str(p)
            assert "\n" not in p.message, p.message
        return
    for p in check(spec, pos, "fuzz.yaml"):
        assert p.line >= 1 and p.col >= 1, str(p)


YAML_BITS = [
    "networks", "guests", "host", "bridges", "interfaces", "ipv4", "address", "dhcp", "mode",
    "nat", "bridge", "mac", "hosts", "dns", "forwards", "xml_extra", ":", ": ", "- ", "-",
    "\n", "\n  ", "\n    ", "  ", "{", "}", "[", "]", ",", "'", '"', "#", "&a ", "*a", "!!map ",
    "!!seq ", "!!str ", "!!binary ", "!!python/object:os.system ", "!tag ", "<<: ", "? ", "|",
    ">", "%YAML 1.1\n", "---\n", "...\n", "~", "null", "true", "yes", "0o17", "0x1F", "1_000",
    ".inf", "-.nan", "2001-12-14", "10.0.0.1/24", "52:54:00:00:00:01", "\t", "\\", "\\x00",
    "\\u202e", "\u00e9", "\u0430", "\ufeff", "\x85", "\u2028", "@", "`", "%", "=",
]


@st.composite
def yaml_text(draw: st.DrawFn) -> str:
    return "".join(draw(st.lists(st.one_of(st.sampled_from(YAML_BITS), st.text(max_size=4)),
                                 max_size=40)))


@cache
def seeds() -> list[str]:
    texts = [p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml"))]
    texts += [p.read_text() for p in sorted((ROOT / "tests/data").glob("*/*.in.yaml"))]
    return texts


@st.composite
def mutated_seed(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(seeds()))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 6))
        text = text[:at] + draw(st.sampled_from(YAML_BITS + [""])) + text[at + cut:]
    return text


@example("\x1f")  # (YAML's reader error: at 1:1, over two lines)
@example("networks:\n  a: {mode: n\x01at}\n")
@fuzz_settings(3000)
@given(st.one_of(yaml_text(), mutated_seed()))
def test_fuzz_yaml_loader(text: str) -> None:
    loader_contract(text)


@fuzz_settings(800)
@given(st.binary(max_size=300))
def test_fuzz_bytes_through_the_reader(data: bytes) -> None:
    try:
        text = decode(data, "fuzz.yaml")
    except SpecError as e:
        assert all(p.line >= 1 for p in e.problems)
        return
    loader_contract(text)


def test_fuzz_file_reader_on_odd_files(tmp_path: Path) -> None:
    """The reader's own cases (the generated bad files of test_bad_input also run)."""
    for name, data in (("empty", b""), ("bom-only", b"\xef\xbb\xbf"), ("cr", b"\r\r\r"),
                       ("nul-late", b"networks: {}\n" + b"x" * 9000 + b"\x00")):
        f = tmp_path / f"{name}.yaml"
        f.write_bytes(data)
        try:
            load(f)
        except SpecError as e:
            assert e.problems


# ------------------------------------------------------------------ the XML parser

@cache
def xml_seeds() -> list[bytes]:
    files = sorted((testdata.installed().path / "networkxml2xmlin").glob("*.xml"))
    assert files
    return [p.read_bytes() for p in files]


ODD_VALUES = ["", " ", "yes", "no", "on", "off", "0", "-1", "1", "24", "129", "65536",
              "4294967296", "99999999999999999999", "abc", "1.2.3.4", "1.2.3.400", "::1",
              "fd00::/64", "255.255.255.0", "255.0.255.0", "52:54:00:00:00:01", "zz:zz",
              "0x10", "1e3", "nat", "route", "bridge", "passthrough", "\u00e9", "a" * 300,
              "10.0.0.1/24", "ipv4", "ipv6", "infinite", "hours", "1.5"]
ODD_TAGS = ["ip", "dhcp", "range", "host", "dns", "forward", "bridge", "mtu", "domain",
            "route", "nat", "port", "address", "interface", "pf", "txt", "srv", "hostname",
            "forwarder", "lease", "tftp", "bootp", "portgroup", "metadata", "uuid", "name", "x"]


@st.composite
def mutated_xml(draw: st.DrawFn) -> bytes:
    raw = draw(st.sampled_from(xml_seeds()))
    if draw(st.integers(0, 9)) == 0:  # byte level: flip, cut, insert
        b = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, max(0, len(b) - 1)))
            op = draw(st.sampled_from(["flip", "cut", "insert"]))
            if op == "flip" and b:
                b[at] = draw(st.integers(0, 255))
            elif op == "cut":
                del b[at:at + draw(st.integers(1, 20))]
            else:
                b[at:at] = draw(st.sampled_from([b"<", b">", b"&", b"'", b'"', b"<x>", b"]]>",
                                                 b"&amp;", b"&#0;", b"<!--", b"\xff"]))
        return bytes(b)
    root = etree.fromstring(raw)
    for _ in range(draw(st.integers(1, 5))):
        els = list(root.iter())
        el = draw(st.sampled_from(els))
        op = draw(st.sampled_from(["attr", "attr", "drop-attr", "drop", "dup", "rename",
                                   "child", "text"]))
        if op == "attr":
            name = draw(st.sampled_from(sorted(el.attrib) or ["address"]) | st.sampled_from(
                ["address", "prefix", "netmask", "mode", "name", "start", "end", "mac", "ip",
                 "family", "size", "stp", "delay", "dev", "expiry", "unit", "gateway"]))
            el.set(name, draw(st.sampled_from(ODD_VALUES)))
        elif op == "drop-attr" and el.attrib:
            del el.attrib[draw(st.sampled_from(sorted(el.attrib)))]
        elif op == "drop" and el.getparent() is not None:
            el.getparent().remove(el)
        elif op == "dup" and el.getparent() is not None:
            el.addnext(etree.fromstring(etree.tostring(el)))
        elif op == "rename" and isinstance(el.tag, str) and "}" not in el.tag:
            el.tag = draw(st.sampled_from(ODD_TAGS))
        elif op == "child":
            etree.SubElement(el, draw(st.sampled_from(ODD_TAGS)),
                             {draw(st.sampled_from(["address", "name", "mode"])):
                              draw(st.sampled_from(ODD_VALUES))})
        elif op == "text":
            el.text = draw(st.sampled_from(ODD_VALUES))
    return etree.tostring(root)


@example(  # libvirt reads netmask='1' as 0.0.0.1; kvmnet read it as /1 (or a host mask
    # '0.0.0.255' as /24): refused now
    b'<network><name>open</name><forward mode="open"/><ip address="192.168.122.1" '
    b'netmask="1"/></network>')
@example(b'<network><name>h</name><ip family="ipv6" address="fd00::1" prefix="64"><dhcp>'
         b'<host id="" ip="fd00::20"/></dhcp></ip></network>')
@example(b"<network><name>d</name><ip address='192.168.122.1' prefix='24'><dhcp>"
         b"<host mac='0:16:3e:77:e2:ed' name='a' ip='192.168.122.10'/>"
         b"<host mac='00:16:3e:3e:a9:1a' name='b' ip='192.168.122.11'/></dhcp></ip></network>")
@fuzz_settings(2000)
@given(mutated_xml())
def test_fuzz_network_xml_parser(raw: bytes) -> None:
    try:
        parsed = parse_network(raw)
    except NetworkXMLError:
        return
    # what the parser accepts, kvmnet can write back without a crash
    try:
        build_network(parsed.name, parsed.network, uuid=parsed.uuid, managed=parsed.managed,
                      owner=parsed.owner)
    except NetworkXMLError:
        return  # (a value the model holds but libvirt XML cannot: refused, not a crash)
    # when libvirt takes it too, parse -> render of libvirt's own text is a no-op
    desc = libvirt_xmldesc(raw)
    if desc is None:
        return
    mine = parse_network(desc)
    again = build_network(mine.name, mine.network, uuid=mine.uuid, managed=mine.managed,
                          owner=mine.owner)
    try:
        ours = canonical(without_empty_metadata(etree.tostring(again, encoding="unicode")))
        theirs = canonical(without_empty_metadata(desc))
    except etree.C14NError:  # C14N refuses relative namespace URIs libvirt keeps
        pass
    else:
        # (what kvmnet keeps verbatim, e.g. a reservation whose MAC libvirt takes but the
        # model does not, '0:16:3e:..', goes after its modelled siblings: same elements,
        # maybe another order among them)
        assert ours == theirs or in_any_order(ours) == in_any_order(theirs)
    assert parse_network(etree.tostring(again)).network == mine.network


def in_any_order(xml: str) -> str:
    """The tree with every element's children sorted: the same elements and values."""
    def key(el: etree._Element) -> str:
        return etree.tostring(el, encoding="unicode")

    root = etree.fromstring(xml.encode())
    for el in reversed(list(root.iter())):  # children before their parents
        kids = sorted(el, key=key)
        for k in kids:
            el.remove(k)
        el.extend(kids)
    return key(root)


def without_empty_metadata(xml: str) -> str:
    """Differences that do not matter: libvirt keeps an empty <metadata/> (of one that
    held only text or elements without a namespace, which it drops), kvmnet keeps
    nothing or only its attributes; libvirt keeps an empty attribute that means nothing
    (a DHCP host's id=''), kvmnet's model has no empty values."""
    root = etree.fromstring(xml.encode())
    for md in root.findall("metadata"):
        if not len(md):
            root.remove(md)
    for el in root.iter():
        for k in [k for k, v in el.attrib.items() if v == ""]:
            del el.attrib[k]
    return etree.tostring(root, encoding="unicode")


@cache
def libvirt_test_driver() -> object:
    """A private test driver (test:///FILE gets its own state; test:///default is
    shared by the whole process and must stay fresh for other tests)."""
    import tempfile

    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)
    node = Path(tempfile.mkdtemp(prefix="kvt-fuzz-")) / "node.xml"
    node.write_text("<node/>\n")
    return libvirt.open(f"test://{node}")


def libvirt_xmldesc(raw: bytes) -> str | None:
    """What libvirt keeps of it (None: it refuses it); the test driver checks what the
    network driver does."""
    import libvirt

    conn: libvirt.virConnect = libvirt_test_driver()  # type: ignore[assignment]
    try:
        net = conn.networkDefineXML(raw.decode())
    except (libvirt.libvirtError, UnicodeDecodeError, SystemError):
        return None
    try:
        return str(net.XMLDesc(0))
    finally:
        net.undefine()


# ------------------------------------------------------------------ hostile values (issue 17)
# Generated at every place of the spec that takes such a value (lab.hostile walks the
# models, so a field added later is tried too); each must be refused where it is written.

LEAVES = hostile.leaves()
NUMBER_LEAVES = [lf for lf in LEAVES if hostile.takes(lf, int, PortRange, Lease)
                 and not hostile.takes(lf, bool) and not lf.is_key]
IFNAME_LEAVES = [lf for lf in LEAVES if "parse_ifname" in lf.validators]


def refused_at(text: str, line: int, col: int) -> list[str]:
    """The messages load gives at LINE:COL of text (it must refuse the text)."""
    try:
        load_text(text, "hostile.yaml")
    except SpecError as e:
        return [p.message for p in e.problems if (p.line, p.col) == (line, col)]
    raise AssertionError(f"accepted:\n{text}")


def test_the_walk_finds_every_kind_of_field() -> None:
    names = {lf.path[-1] for lf in NUMBER_LEAVES}
    assert {"mtu", "delay", "metric", "forward_delay", "port", "priority", "weight",
            "host_port", "guest_port", "ports", "lease_time"} <= names, names
    assert {lf.name for lf in IFNAME_LEAVES} >= {
        "host.bridges.k(key)", "host.bridges.k.ports.0", "networks.k.bridge",
        "networks.k.uplink", "networks.k.devices.0", "guests.k.interfaces.0.bridge"}


@fuzz_settings(600)
@given(leaf=st.sampled_from([lf for lf in LEAVES if not lf.is_key]),
       number=hostile.MISREAD_NUMBERS)
def test_numbers_yaml_misreads_are_refused_where_written(leaf: hostile.Leaf,
                                                        number: str) -> None:
    """22:22 (base 60), 011000 (octal), 0x.., 0b.., 1_000 anywhere: located, and the
    message says what YAML read."""
    text, line, col = hostile.yaml_at(leaf, number)
    msgs = refused_at(text, line, col)
    expected = ("a MAC address must be quoted" if leaf.path[-1] == "mac" and ":" in number
                else f"YAML 1.1 reads {number} as ")
    assert any(expected in m for m in msgs), (leaf.name, number, msgs)


@fuzz_settings(200)
@given(leaf=st.sampled_from(NUMBER_LEAVES), n=st.integers(0, 10**6))
def test_plain_decimal_numbers_are_read_as_written(leaf: hostile.Leaf, n: int) -> None:
    text, line, col = hostile.yaml_at(leaf, str(n))
    try:
        load_text(text, "decimal.yaml")
    except SpecError as e:
        assert not any("YAML 1.1 reads" in p.message for p in e.problems), e.problems


@fuzz_settings(300)
@given(leaf=st.sampled_from(IFNAME_LEAVES), name=hostile.WILDCARD_IFNAMES)
def test_interface_names_ending_in_a_wildcard_are_refused(leaf: hostile.Leaf,
                                                         name: str) -> None:
    text, line, col = hostile.yaml_at(leaf, name)
    msgs = refused_at(text, line, col)
    assert any(f"interface name {name!r} ends in '+'" in m for m in msgs), (leaf.name, msgs)


NAMEPART = st.from_regex(r"[a-z][a-z0-9]{0,3}", fullmatch=True)


@fuzz_settings(200)
@given(bridge=NAMEPART, port=NAMEPART, collider_first=st.booleans())
def test_network_manager_profiles_never_share_a_name(bridge: str, port: str,
                                                     collider_first: bool) -> None:
    """Bridge B with port P and a bridge named B-port-P: refused by validate, and the
    renderer (given a spec that skipped validation) writes neither."""
    from kvmnet.errors import RenderError
    from kvmnet.model.spec import HostBridge, Spec
    from kvmnet.render.host_nm import render_networkmanager

    other = f"{bridge}-port-{port}"
    pair = [(bridge, f'{{ports: ["{port}"]}}'), (other, "{}")]
    if collider_first:
        pair.reverse()
    text = "host:\n  bridges:\n" + "".join(f'    "{b}": {v}\n' for b, v in pair)
    spec, pos = load_text(text, "nm.yaml")
    found = [p.message for p in check(spec, pos, "nm.yaml")]
    assert sum("NetworkManager would name the profile" in m for m in found) == 1, found
    raw = Spec.model_construct(host=spec.host.model_copy(update={"bridges": {
        b: HostBridge(ports=[port] if b == bridge else []) for b, _ in pair}}))
    with pytest.raises(RenderError, match=f"profiles would be named kvmnet-{other}"):
        render_networkmanager(raw)


ADDRESS_LEAVES = [lf for lf in LEAVES if lf.validators & set(hostile.ADDRESS_PARSERS)]


def test_the_walk_finds_every_address_field() -> None:
    names = {".".join(map(str, lf.path)) for lf in ADDRESS_LEAVES}
    assert len(ADDRESS_LEAVES) >= 32, names
    for must in ("host.bridges.k.address.0", "host.bridges.k.gateway", "host.bridges.k.dns.0",
                 "host.bridges.k.check", "networks.k.forwards.0.address",
                 "networks.k.forwards.0.listen", "networks.k.forwards.0.sources.0",
                 "networks.k.dns.hosts.0.ip", "networks.k.dns.forwarders.0.addr",
                 "networks.k.ipv6.routes.0.via", "networks.k.ipv6.hosts.0.ip",
                 "networks.k.nat.addresses", "guests.k.interfaces.0.ipv6"):
        assert must in names, must


@fuzz_settings(800)
@given(leaf=st.sampled_from(ADDRESS_LEAVES), scope=hostile.SCOPES)
def test_addresses_with_a_scope_id_are_refused_where_written(leaf: hostile.Leaf,
                                                            scope: str) -> None:
    """fe80::1%<anything>: ipaddress keeps the text after '%' (line breaks, $(...), ';'),
    so every address field refuses a scope id, at its LINE:COL, saying what to write."""
    value = hostile.scoped_text(leaf, scope)
    text, line, col = hostile.yaml_at(leaf, hostile.yaml_string(value))
    msgs = refused_at(text, line, col)
    assert msgs, (leaf.name, value)
    if scope == scope.strip():
        assert any("has a scope id" in m and "write 'fe80::" in m for m in msgs), msgs
    assert all("\n" not in m and "\r" not in m for m in msgs)


def uri_problems(uri: str) -> list[str]:
    """validate's messages about hosts.hv1.uri of a spec naming uri: all at its LINE:COL."""
    head = "  hv1: {uri: "
    text = f"hosts:\n{head}{hostile.yaml_string(uri)}}}\n"
    spec, pos = load_text(text, "uri.yaml")
    found = [p for p in check(spec, pos, "uri.yaml") if "hosts.hv1.uri" in p.message]
    assert all((p.line, p.col) == (2, len(head) + 1) for p in found), found
    return [p.message for p in found]


@fuzz_settings(400)
@given(uri=hostile.refused_uris())
def test_spec_uris_that_run_or_read_are_refused(uri: str) -> None:
    """qemu+ext, ?command=, ?netcat=, ?keyfile=, ?socket=ELSEWHERE, test:///PATH, a host
    ssh would read as an option, %-escapes...: refused at hosts.NAME.uri."""
    from kvmnet.model.uri import spec_uri_problem

    assert spec_uri_problem(uri), uri
    msgs = uri_problems(uri)
    assert msgs and all(m.startswith("hosts.hv1.uri: ") for m in msgs), (uri, msgs)


@fuzz_settings(200)
@given(uri=hostile.allowed_uris())
def test_spec_uris_on_the_allow_list_are_taken(uri: str) -> None:
    assert uri_problems(uri) == [], uri
