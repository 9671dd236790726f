"""The in-memory backend (kvmnet.backend.fake): it keeps what libvirt keeps, refuses what
libvirt refuses, counts every write; and read.py reads it as it reads libvirt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lxml import etree

from kvmnet.backend.base import Backend
from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.libvirt import Connection
from kvmnet.backend.read import read_state
from kvmnet.errors import LiveError

NAT = ("<network><name>n1</name><forward mode='nat'/>"
       "<ip address='10.9.0.1' prefix='24'><dhcp><range start='10.9.0.10' end='10.9.0.20'/>"
       "</dhcp></ip></network>")
HOST = "<host mac='52:54:00:00:00:01' name='a' ip='10.9.0.5'/>"
DOM = ("<domain type='test'><name>vm</name><devices>"
       "<interface type='network'><mac address='52:54:00:aa:00:01'/>"
       "<source network='n1'/><model type='virtio'/></interface></devices></domain>")
NIC = ("<interface type='network'><mac address='52:54:00:aa:00:02'/>"
       "<source network='n1'/></interface>")


def _text(xml: str, path: str) -> list[str]:
    return [etree.tostring(e, encoding="unicode") if not isinstance(e, str) else e
            for e in etree.fromstring(xml.encode()).xpath(path)]


@pytest.fixture
def fake() -> FakeBackend:
    f = FakeBackend()
    f.define_network("n1", NAT)
    f.start_network("n1")
    return f


def test_the_fake_is_a_backend() -> None:
    b: Backend = FakeBackend()
    assert b.is_test and b.writes == []


def test_define_fills_in_what_libvirt_fills_in(fake: FakeBackend) -> None:
    xml = fake.networks["n1"].xml
    assert _text(xml, "uuid/text()") and _text(xml, "mac/@address")
    assert _text(xml, "bridge/@name") == ["virbr0"]
    assert _text(xml, "bridge/@stp") == ["on"]
    fake.define_network("n2", NAT.replace("n1", "n2").replace("10.9.0", "10.9.1"))
    assert _text(fake.networks["n2"].xml, "bridge/@name") == ["virbr1"]
    assert fake.writes == ["define network n1", "start network n1", "define network n2"]


def test_define_refuses_what_libvirt_refuses(fake: FakeBackend) -> None:
    with pytest.raises(LiveError, match="already exists with uuid"):
        fake.define_network("n1", NAT)  # no UUID: a new network of the same name
    with pytest.raises(LiveError, match="bridge name 'virbr0' already in use"):
        fake.define_network("n2", NAT.replace("n1", "n2").replace(
            "<forward", "<bridge name='virbr0'/><forward"))
    with pytest.raises(LiveError, match="already active"):
        fake.start_network("n1")
    assert len(fake.writes) == 5  # refused calls are counted too


def test_redefine_keeps_the_running_config_until_a_restart(fake: FakeBackend) -> None:
    uuid = fake.networks["n1"].uuid
    new = NAT.replace("<forward", f"<uuid>{uuid}</uuid><domain name='x.test'/><forward")
    fake.define_network("n1", new, "redefine")
    running = fake.networks["n1"].running
    assert running is not None and "x.test" not in running
    assert "x.test" in fake.networks["n1"].xml
    fake.stop_network("n1")
    fake.start_network("n1")
    assert "x.test" in (fake.networks["n1"].running or "")


def test_undefine_of_a_running_network_leaves_it_transient(fake: FakeBackend) -> None:
    fake.undefine_network("n1")
    assert fake.network_active("n1") is True and not fake.networks["n1"].persistent
    fake.stop_network("n1")
    assert fake.network_active("n1") is None


def test_dhcp_host_updates(fake: FakeBackend) -> None:
    fake.update_network("n1", "add-last", "ip-dhcp-host", 0, HOST, live=True)
    for xml in (fake.networks["n1"].xml, fake.networks["n1"].running or ""):
        assert _text(xml, "ip/dhcp/host/@ip") == ["10.9.0.5"]
    with pytest.raises(LiveError, match="existing dhcp host entry"):
        fake.update_network("n1", "add-last", "ip-dhcp-host", 0,
                            HOST.replace("'a'", "'b'").replace(".5", ".6"), live=True)
    fake.update_network("n1", "modify", "ip-dhcp-host", 0, HOST.replace(".5", ".7"), True)
    assert _text(fake.networks["n1"].xml, "ip/dhcp/host/@ip") == ["10.9.0.7"]
    fake.update_network("n1", "delete", "ip-dhcp-host", 0, HOST.replace(".5", ".7"), True)
    assert _text(fake.networks["n1"].xml, "ip/dhcp/host") == []
    assert _text(fake.networks["n1"].xml, "ip/dhcp/range/@start") == ["10.9.0.10"]
    with pytest.raises(LiveError, match="couldn't locate"):
        fake.update_network("n1", "delete", "ip-dhcp-host", 0, HOST, live=True)


def test_config_only_update_leaves_the_running_network(fake: FakeBackend) -> None:
    fake.update_network("n1", "add-last", "ip-dhcp-host", -1, HOST, live=False)
    assert _text(fake.networks["n1"].running or "", "ip/dhcp/host") == []
    fake.stop_network("n1")
    with pytest.raises(LiveError, match="not running"):
        fake.update_network("n1", "delete", "ip-dhcp-host", -1, HOST, live=True)


def test_dns_host_updates(fake: FakeBackend) -> None:
    dns = "<host ip='10.9.0.5'><hostname>a</hostname></host>"
    fake.update_network("n1", "add-last", "dns-host", -1, dns, live=True)
    assert _text(fake.networks["n1"].xml, "dns/host/hostname/text()") == ["a"]
    with pytest.raises(LiveError, match="matching field"):
        fake.update_network("n1", "add-last", "dns-host", -1, dns, live=True)
    fake.update_network("n1", "delete", "dns-host", -1, dns, live=True)
    assert _text(fake.networks["n1"].xml, "dns") == []  # an empty <dns> is no <dns>


def test_nics(fake: FakeBackend) -> None:
    fake.load_domain(DOM, running=True)
    fake.change_nic("vm", "attach", "52:54:00:aa:00:02", NIC, live=True)
    d = fake.domains["vm"]
    for xml in (d.xml, d.running or ""):
        assert _text(xml, "devices/interface/mac/@address") == [
            "52:54:00:aa:00:01", "52:54:00:aa:00:02"]
    with pytest.raises(LiveError, match="already exists"):
        fake.change_nic("vm", "attach", "52:54:00:aa:00:02", NIC, live=False)
    fake.change_nic("vm", "update", "52:54:00:aa:00:02",
                    NIC.replace("</interface>", "<model type='e1000'/></interface>"), False)
    assert _text(d.xml, "devices/interface/model/@type") == ["virtio", "e1000"]
    assert _text(d.running or "", "devices/interface/model/@type") == ["virtio"]
    fake.change_nic("vm", "detach", "52:54:00:aa:00:01", "", live=True)
    assert _text(d.xml, "devices/interface/mac/@address") == ["52:54:00:aa:00:02"]
    with pytest.raises(LiveError, match="no matching network device"):
        fake.change_nic("vm", "detach", "52:54:00:aa:00:01", "", live=False)
    with pytest.raises(LiveError, match="Domain not found"):
        fake.change_nic("nope", "detach", "52:54:00:aa:00:01", "", live=False)
    fake.set_managed_macs("vm", "<nics><nic mac='52:54:00:aa:00:02'/></nics>")
    assert read_state(fake).domains["vm"].managed_macs == {"52:54:00:aa:00:02"}


def test_a_refused_write_is_counted_and_changes_nothing(fake: FakeBackend) -> None:
    fake.refuse["stop network n1"] = "dnsmasq would not die"
    before = fake.snapshot()
    with pytest.raises(LiveError, match="stop network n1: libvirt says: dnsmasq would not"):
        fake.stop_network("n1")
    assert fake.snapshot() == before and fake.writes[-1] == "stop network n1"


@pytest.fixture
def testdriver() -> Iterator[Connection]:
    c = Connection.open("test:///default")
    yield c
    c.close()


def test_read_sees_the_fake_as_it_sees_libvirt(testdriver: Connection) -> None:
    """The same XML and flags, held by libvirt's test driver and by the fake, read into
    the same LiveState (but for what tells the drivers apart)."""
    real = read_state(testdriver)
    fake = FakeBackend()
    for r in testdriver.fetch_networks():
        fake.load_network(r.xml, r.active, r.autostart, r.persistent)
    for d in testdriver.fetch_domains():
        fake.load_domain(d.xml, d.running, d.metadata, d.live_xml)
    got = read_state(fake)
    assert real.networks and real.domains
    assert got.domains == real.domains
    assert {n: (ln.network, ln.active, ln.autostart, ln.uuid, ln.managed)
            for n, ln in got.networks.items()} == {
        n: (ln.network, ln.active, ln.autostart, ln.uuid, ln.managed)
        for n, ln in real.networks.items()}


class _Counted:
    """A libvirt connection that counts the calls made on it."""

    def __init__(self, raw: object) -> None:
        self.raw, self.calls = raw, list[str]()

    def __getattr__(self, name: str) -> object:
        self.calls.append(name)
        return getattr(self.raw, name)


def test_network_handles_are_kept_per_connection(testdriver: Connection) -> None:
    """define's handle serves start, autostart, stop and a redefine: no lookup each;
    after undefine the name is looked up again, and a new network of the same name
    (a new UUID) is the one then started."""
    counted = _Counted(testdriver.raw)
    testdriver.raw = counted
    xml = NAT.replace("n1", "kvt-pf-h")
    testdriver.define_network("kvt-pf-h", xml)
    testdriver.start_network("kvt-pf-h")
    testdriver.set_network_autostart("kvt-pf-h", True)
    testdriver.stop_network("kvt-pf-h")
    old = testdriver._net("kvt-pf-h").UUIDString()
    testdriver.define_network("kvt-pf-h", xml.replace("<forward", f"<uuid>{old}</uuid><forward"),
                              "redefine")
    testdriver.start_network("kvt-pf-h")
    assert "networkLookupByName" not in counted.calls
    testdriver.stop_network("kvt-pf-h")
    testdriver.undefine_network("kvt-pf-h")
    counted.raw.networkDefineXML(xml)  # not through kvmnet
    testdriver.start_network("kvt-pf-h")
    assert counted.calls.count("networkLookupByName") == 1
    net = counted.raw.networkLookupByName("kvt-pf-h")
    assert net.isActive() and net.UUIDString() != old
