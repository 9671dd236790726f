"""kvmnet.backend.read takes each network's and domain's flags (active, autostart,
persistent; running) from filtered listings, not from calls per object: on libvirt's
test driver, for every combination, they must equal what the per-object calls say, and
the number of calls to libvirt must not grow by three per network."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from kvmnet.backend.libvirt import Connection
from kvmnet.backend.read import read_domains, read_networks

XML = ("<network><name>{name}</name><bridge name='{br}'/>"
       "<ip address='10.249.{i}.1' netmask='255.255.255.0'/></network>")


@pytest.fixture
def conn() -> Iterator[Connection]:
    c = Connection.open("test:///default")
    yield c
    c.close()


def test_network_flags_match_the_per_network_calls(conn: Connection) -> None:
    raw = conn.raw
    raw.networkDefineXML(XML.format(name="kvt-rd-off", br="kvtrd1", i=1))  # inactive
    on = raw.networkDefineXML(XML.format(name="kvt-rd-auto", br="kvtrd2", i=2))
    on.create()
    on.setAutostart(1)
    raw.networkCreateXML(XML.format(name="kvt-rd-transient", br="kvtrd3", i=3))
    got = read_networks(conn)
    nets = raw.listAllNetworks()
    assert len(nets) >= 4
    for n in nets:
        ln = got[n.name()]
        assert (ln.active, ln.autostart, ln.persistent, ln.uuid) == (
            bool(n.isActive()), bool(n.autostart()), bool(n.isPersistent()), n.UUIDString())
        if ln.active:
            assert ln.bridge == n.bridgeName()
        assert not ln.split_config  # the test driver shows one XML only
    assert (got["kvt-rd-transient"].persistent, got["kvt-rd-off"].active,
            got["kvt-rd-auto"].autostart) == (False, False, True)


class Counting:
    """The raw connection, counting what kvmnet asks of it (objects it returns too)."""

    def __init__(self, raw: Any, calls: list[str]) -> None:
        self._raw, self._calls = raw, calls

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._raw, name)
        if not callable(target):
            return target

        def call(*a: Any, **k: Any) -> Any:
            self._calls.append(name)
            out = target(*a, **k)
            if isinstance(out, list):
                return [Counting(x, self._calls) for x in out]
            return out

        return call


def test_calls_per_network(conn: Connection) -> None:
    for i in range(5):
        conn.raw.networkDefineXML(XML.format(name=f"kvt-rd-{i}", br=f"kvtrd{i}", i=10 + i))
    n = len(conn.raw.listAllNetworks())
    calls: list[str] = []
    read_networks(Connection(conn.uri, Counting(conn.raw, calls)))
    local = {"UUIDString", "name"}  # kept by the binding
    remote = [c for c in calls if c not in local]
    # one listing + three filtered ones; per network XMLDesc (the test driver: once
    # with the inactive flag, refused, then without) and bridgeName when active
    active = len(conn.raw.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE))
    assert remote.count("listAllNetworks") == 4
    assert remote.count("XMLDesc") == n + 1
    assert remote.count("bridgeName") == active
    assert len(remote) == 4 + n + 1 + active


def test_domain_flags_match_the_per_domain_calls(conn: Connection) -> None:
    doms = conn.raw.listAllDomains()
    assert doms  # the test driver's 'test' domain
    got = read_domains(conn)
    for d in doms:
        assert got[d.name()].running == bool(d.isActive())
