"""plan / apply / import against libvirt's in-process test driver.

test:///default keeps its state only as long as one connection, so each
test drives kvmnet's core on one Connection (the CLI opens its own).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvmnet.backend.libvirt import Connection
from kvmnet.cli.live import do_apply
from kvmnet.errors import PlanError, SpecError
from kvmnet.service.ops import import_spec, plan_file, read_live
from kvmnet.spec.dump import dump

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"


@pytest.fixture
def conn():
    c = Connection.open("test:///default")
    yield c
    c.close()


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    """The suite's specs are edits of the seed: its owner's, whatever their file is called."""
    p = tmp_path / name
    p.write_text(text if "owner:" in text else f"owner: {SEED.resolve()}\n{text}")
    return p


def apply(path: Path, conn: Connection, **kw) -> int:
    before = len(conn.writes)
    assert do_apply(path, conn, True, kw.get("allow_destroy", False), True,
                    frozenset(kw.get("adopt", ())), None, 0)
    return len(conn.writes) - before


def kinds(path: Path, conn: Connection) -> list[str]:
    return [a.kind for a in plan_file(path, conn).plan.actions if not a.skipped]


def test_seed_plan_apply_converges(conn):
    first = plan_file(SEED, conn).plan
    got = {(a.kind, a.target) for a in first.actions}
    assert ("network.adopt", "network/default") in got
    assert ("network.create", "network/mynet1") in got
    assert ("network.create", "network/lan") in got
    # the host bridge is shown but never run against test:///
    hb = [a for a in first.actions if a.kind == "host.bridge"]
    assert hb and hb[0].skipped
    assert apply(SEED, conn) > 0
    live = read_live(conn)
    assert live.networks["mynet1"].active and live.networks["mynet1"].managed
    assert live.networks["mynet1"].autostart
    assert live.networks["default"].managed
    assert str(live.networks["mynet1"].network.ipv4.address) == "203.0.113.89/29"
    # web1's reservation on default is live
    hosts = live.networks["default"].network.ipv4.hosts
    assert [(str(h.ip), h.name) for h in hosts] == [("192.168.122.10", "web1")]
    # converged: nothing to do, and a second apply makes no write call at all
    assert kinds(SEED, conn) == []
    assert apply(SEED, conn) == 0


def test_unmanaged_network_needs_adopt(conn, tmp_path):
    spec = write(tmp_path, "networks:\n  default:\n    mode: nat\n    bridge: virbr0\n"
                 "    ipv4: {address: 192.168.122.1/24}\n")
    with pytest.raises(SpecError) as e:
        plan_file(spec, conn)
    msg = str(e.value)
    assert "not managed by kvmnet" in msg and "adopt: true" in msg and "--adopt default" in msg
    assert f"{spec}:3:3" in msg
    # --adopt NAME works like adopt: true, and shows the difference (the dhcp range goes)
    p = plan_file(spec, conn, frozenset({"default"})).plan
    assert [a.kind for a in p.actions][:1] == ["network.adopt"]
    assert conn.writes == []


def test_dhcp_reservation_is_one_live_update(conn, tmp_path):
    base = SEED.read_text()
    apply(SEED, conn)
    more = base.replace(
        "ipv4: {address: 203.0.113.89/29, dhcp: 203.0.113.90-203.0.113.94}",
        "ipv4:\n      address: 203.0.113.89/29\n      dhcp: 203.0.113.90-203.0.113.94\n"
        "      hosts: [{mac: '52:54:00:00:00:42', name: db, ip: 203.0.113.92}]")
    spec = write(tmp_path, more)
    p = plan_file(spec, conn).plan
    acts = [a for a in p.actions if not a.skipped]
    assert [a.kind for a in acts] == ["network.update"]
    assert acts[0].impact == "live"
    assert [(u.command, u.section) for u in acts[0].updates] == [("add-last", "ip-dhcp-host")]
    uuid_before = read_live(conn).networks["mynet1"].uuid
    assert apply(spec, conn) == 2   # the networkUpdate call, and kvmnet's record of it
    live = read_live(conn).networks["mynet1"]
    assert live.uuid == uuid_before and live.active
    assert [str(h.ip) for h in live.network.ipv4.hosts] == ["203.0.113.92"]
    # remove it again: one delete (and the record)
    assert apply(SEED, conn) == 2
    assert read_live(conn).networks["mynet1"].network.ipv4.hosts == []


def test_dns_hosts_change_live(conn, tmp_path):
    text = ("networks:\n  kvt-dns:\n    mode: nat\n    bridge: kvtdns0\n"
            "    ipv4: {address: 10.90.0.1/24}\n"
            "    dns: {hosts: [{ip: 10.90.0.5, names: [a.example]}]}\n")
    apply(write(tmp_path, text), conn)
    changed = text.replace("names: [a.example]", "names: [a.example, b.example]")
    p = plan_file(write(tmp_path, changed, "b.yaml"), conn).plan
    assert [a.kind for a in p.actions] == ["network.update"]
    assert [(u.command, u.section) for u in p.actions[0].updates] == [
        ("delete", "dns-host"), ("add-last", "dns-host")]
    assert apply(write(tmp_path, changed, "b.yaml"), conn) == 3   # 2 updates, the record
    dns = read_live(conn).networks["kvt-dns"].network.dns
    assert dns is not None and dns.hosts[0].names == ["a.example", "b.example"]


def test_mtu_change_needs_restart(conn, tmp_path):
    text = ("networks:\n  kvt-mtu:\n    mode: nat\n    bridge: kvtmtu0\n"
            "    ipv4: {address: 10.91.0.1/24, dhcp: 10.91.0.10-10.91.0.20}\n")
    spec = write(tmp_path, text)
    apply(spec, conn)
    p = plan_file(write(tmp_path, text.replace("nat\n", "nat\n    mtu: 9000\n"), "m.yaml"),
                  conn).plan
    assert [(a.kind, a.impact) for a in p.actions] == [("network.redefine", "restart")]
    assert p.actions[0].details == ("+ MTU 9000",)
    # (drift found after a hand edit: the real-libvirtd tests; the test driver shows only
    # the running definition of an active network)
    changed = write(tmp_path, text.replace("nat\n", "nat\n    mtu: 9000\n"), "m.yaml")
    apply(changed, conn)
    assert read_live(conn).networks["kvt-mtu"].network.mtu == 9000
    assert kinds(changed, conn) == []


def test_import_then_plan_is_empty(conn, tmp_path):
    apply(SEED, conn)
    spec, notes = import_spec(read_live(conn))
    path = write(tmp_path, dump(spec))
    assert kinds(path, conn) == []
    assert "mynet1" in spec.networks and spec.networks["default"].adopt is False


def test_removal_with_guest_needs_allow_destroy(conn, tmp_path):
    text = ("networks:\n  kvt-rm:\n    mode: isolated\n    bridge: kvtrm0\n"
            "    ipv4: {address: 10.92.0.1/24}\n"
            "guests:\n  test:\n    interfaces: [{network: kvt-rm}]\n")
    apply(write(tmp_path, text), conn)
    dom = read_live(conn).domains["test"]
    ours = [n for n in dom.nics if n.source == "kvt-rm"]
    assert len(ours) == 1
    # the driver's own NIC on 'default' is not kvmnet's: recorded are only ours
    assert dom.managed_macs == {ours[0].mac}
    empty = write(tmp_path, "networks: {}\n", "empty.yaml")
    with pytest.raises(PlanError, match="--allow-destroy"):
        do_apply(empty, conn, True, False, True, frozenset(), None, 0)
    assert "kvt-rm" in read_live(conn).networks
    # the guest is not in this spec, so its NIC stays; the network goes only when allowed
    assert apply(empty, conn, allow_destroy=True) > 0
    live = read_live(conn)
    assert "kvt-rm" not in live.networks


def test_guest_nic_attach_update_detach(conn, tmp_path, capsys):
    nets = ("networks:\n  kvt-a:\n    mode: isolated\n    bridge: kvta0\n"
            "    ipv4: {address: 10.93.0.1/24}\n"
            "  kvt-b:\n    mode: isolated\n    bridge: kvtb0\n"
            "    ipv4: {address: 10.94.0.1/24}\n")
    one = write(tmp_path, nets + "guests:\n  test:\n    interfaces: [{network: kvt-a, "
                "model: virtio, ipv4: 10.93.0.7}]\n", "one.yaml")
    apply(one, conn)
    def kvt_nics():
        return [n for n in read_live(conn).domains["test"].nics if n.source.startswith("kvt")]

    (nic,) = kvt_nics()
    assert (nic.source, nic.model) == ("kvt-a", "virtio")
    assert kinds(one, conn) == []
    # The running guest `test`: with the NIC live too, or (a driver that cannot hotplug
    # it: libvirt 9's test driver, and 11's for an <interface type='network'>) the
    # report says so and when it takes effect.
    (attach,) = [r for r in json.loads(capsys.readouterr().out)["results"]
                 if r["kind"] == "nic.attach"]
    assert attach["status"] == "done"
    live_macs = {n.mac for n in read_live(conn).domains["test"].live_nics}
    if nic.mac not in live_macs:
        assert "cannot attach a NIC of a running guest" in attach["message"]
        assert "from its next start" in attach["message"]
    moved = write(tmp_path, nets + "guests:\n  test:\n    interfaces: [{network: kvt-b, "
                  "model: virtio}]\n", "moved.yaml")
    p = plan_file(moved, conn).plan
    assert "nic.update" in [a.kind for a in p.actions]
    apply(moved, conn)
    (nic2,) = kvt_nics()
    assert nic2.mac == nic.mac and nic2.source == "kvt-b"
    none = write(tmp_path, nets + "guests:\n  test: {interfaces: []}\n", "none.yaml")
    assert [a.kind for a in plan_file(none, conn).plan.actions] == ["nic.detach"]
    apply(none, conn)
    assert kvt_nics() == []
    # the NIC kvmnet never attached (the driver's own, on 'default') is left alone
    assert [n.source for n in read_live(conn).domains["test"].nics] == ["default"]


def test_mac_of_another_domain_is_refused(conn, tmp_path):
    nets = ("networks:\n  kvt-m:\n    mode: isolated\n    bridge: kvtm0\n"
            "    ipv4: {address: 10.95.0.1/24}\n")
    apply(write(tmp_path, nets + "guests:\n  test:\n    interfaces: [{network: kvt-m, "
                "mac: '52:54:00:aa:bb:cc'}]\n"), conn)
    other = write(tmp_path, nets + "guests:\n  other:\n    interfaces: [{network: kvt-m, "
                  "mac: '52:54:00:aa:bb:cc'}]\n", "o.yaml")
    with pytest.raises(SpecError, match="already used by domain test"):
        plan_file(other, conn)


# Networks libvirt accepts but kvmnet's model cannot hold (it refuses these values in a
# spec): someone else's, so they must neither block nor be touched.
FOREIGN = {
    "kvf-domain": "<network><name>kvf-domain</name><bridge name='kvf0'/>"
                  "<domain name='my lab'/></network>",
    "kvf-mtu": "<network><name>kvf-mtu</name><forward mode='route'/><bridge name='kvf1'/>"
               "<mtu size='70000'/><ip address='10.247.9.1' prefix='24'/></network>",
    "kvf-colon": "<network><name>kvf-colon</name><bridge name='kvf:2'/></network>",
}
NEW_NET = ("networks:\n  kvf-new:\n    bridge: kvfn0\n    ipv4: {address: 10.247.0.1/24, "
           "dhcp: 10.247.0.100-10.247.0.199}\n")


@pytest.fixture
def foreign(conn):
    """The FOREIGN networks, defined (inactive); their XML as libvirt keeps it."""
    for xml in FOREIGN.values():
        conn.raw.networkDefineXML(xml)
    yield {n: conn.raw.networkLookupByName(n).XMLDesc(0) for n in FOREIGN}
    for n in FOREIGN:
        conn.raw.networkLookupByName(n).undefine()


def test_unreadable_foreign_networks_do_not_block_and_are_not_touched(conn, foreign,
                                                                       tmp_path):
    live = read_live(conn)
    for name in FOREIGN:
        ln = live.networks[name]
        assert ln.problem and not ln.managed
    assert live.networks["kvf-mtu"].network.mode == "route"
    assert live.networks["kvf-domain"].network.bridge == "kvf0"
    assert live.networks["kvf-colon"].bridge == "kvf:2"
    spec = write(tmp_path, NEW_NET)
    assert kinds(spec, conn) == ["network.create"]
    assert apply(spec, conn) == 3
    assert kinds(spec, conn) == []
    assert {n: conn.raw.networkLookupByName(n).XMLDesc(0) for n in FOREIGN} == foreign
    imported, notes = import_spec(read_live(conn))
    assert set(imported.networks) >= {"kvf-new"} and not set(imported.networks) & set(FOREIGN)
    assert sum("kvf-" in n and "left out" in n for n in notes) == len(FOREIGN)


def test_a_spec_naming_an_unreadable_network_is_refused(conn, foreign, tmp_path):
    spec = write(tmp_path, "networks:\n  kvf-mtu:\n    adopt: true\n    bridge: kvf1\n"
                 "    ipv4: {address: 10.247.9.1/24}\n")
    with pytest.raises(SpecError) as e:
        plan_file(spec, conn)
    (p,) = e.value.problems
    assert "kvf-mtu" in p.message and "cannot read it" in p.message and "70000" in p.message
    assert "rename the network" in p.message


def test_an_unreadable_network_with_kvmnet_mark_is_an_error(conn):
    conn.raw.networkDefineXML(
        "<network><name>kvf-ours</name><bridge name='kvf3'/><domain name='x y'/>"
        "<metadata><kvmnet:managed xmlns:kvmnet='https://kvmnet.dev/xmlns/1'/></metadata>"
        "</network>")
    from kvmnet.errors import LiveError

    try:
        with pytest.raises(LiveError, match="kvf-ours is managed by kvmnet but cannot be read"):
            read_live(conn)
    finally:
        conn.raw.networkLookupByName("kvf-ours").undefine()
