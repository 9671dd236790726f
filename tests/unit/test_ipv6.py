"""IPv6 on networks (issue 23): SLAAC beside DHCPv6 as kvmnet's dnsmasq option, read back
as `slaac: true`; NAT66 refused on a libvirt that would ignore it; hostile values in
the option refused where it is written and not taken for kvmnet's where it is read.
(The guests that get these addresses: tests/e2e/test_v6.py.)"""

from __future__ import annotations

import pytest
import yaml

from kvmnet.apply.runner import run
from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.read import read_state
from kvmnet.errors import RenderError
from kvmnet.model.spec import IPConfig, Spec
from kvmnet.parse.network import parse_network
from kvmnet.plan import make_plan
from kvmnet.plan.networks import NAT66_SINCE
from kvmnet.render.dnsmasq import recognise, slaac_option
from kvmnet.render.network import network_xml

SPEC = """\
networks:
  n6:
    mode: nat
    bridge: virbr26
    nat: {ipv6: true}
    ipv4: {address: 10.162.26.1/24, dhcp: 10.162.26.100-10.162.26.199}
    ipv6: {address: "fd00:162:26::1/64", dhcp: "fd00:162:26::100-fd00:162:26::1ff",
           slaac: true}
"""


def _spec(text: str = SPEC) -> Spec:
    return Spec.model_validate(yaml.safe_load(text))


def test_slaac_beside_dhcpv6_is_one_ra_only_range_on_the_64() -> None:
    xml = network_xml(_spec(), "n6")
    assert 'value="dhcp-range=fd00:162:26::,ra-only,64"' in xml
    assert parse_network(xml).network.ipv6 == _spec().networks["n6"].ipv6


@pytest.mark.parametrize("ipv6, why", [
    ({"address": "fd00:1::1/64"}, "no DHCPv6: libvirt's own ra-only line says it"),
    ({"address": "fd00:1::1/64", "dhcp": "fd00:1::10-fd00:1::20"}, "slaac not asked"),
    ({"address": "fd00:1::1/64", "dhcp": "fd00:1::10-fd00:1::20", "slaac": False},
     "slaac: false"),
])
def test_no_option_where_libvirt_says_it_all(ipv6: dict[str, object], why: str) -> None:
    assert slaac_option(IPConfig.model_validate(ipv6), []) is None, why


def test_a_guests_reservation_is_dhcpv6_too() -> None:
    ipc = IPConfig.model_validate({"address": "fd00:1::1/64", "slaac": True})
    assert slaac_option(ipc, []) is None      # SLAAC only: libvirt's ra-only
    from kvmnet.model.spec import DhcpHost
    host = DhcpHost.model_validate({"ip": "fd00:1::10", "name": "g"})
    assert slaac_option(ipc, [host]) == "dhcp-range=fd00:1::,ra-only,64"


def test_slaac_on_another_prefix_length_is_refused_where_written() -> None:
    ipc = IPConfig.model_validate({"address": "fd00:1::1/80", "slaac": True,
                                   "dhcp": "fd00:1::10-fd00:1::20"})
    with pytest.raises(RenderError, match="needs a /64"):
        slaac_option(ipc, [])


@pytest.mark.parametrize("option", [
    "dhcp-range=fd00:1::%eth0,ra-only,64",      # a scope id
    "dhcp-range=fd00:1::,ra-only,64,extra",
    "dhcp-range=fd00:1::,ra-only,80",
    "dhcp-range=10.0.0.0,ra-only,64",
    "dhcp-range=fd00:1:0::,ra-only,64",         # not written the way kvmnet writes it
    "dhcp-range=fd00:1::,ra-names,64",
    "dhcp-range=fd00:1::\nx,ra-only,64",
])
def test_only_kvmnets_own_option_is_read_as_slaac(option: str) -> None:
    assert recognise(option) is None


def test_an_option_for_a_block_without_dhcpv6_stays_verbatim() -> None:
    xml = network_xml(_spec(SPEC.replace('dhcp: "fd00:162:26::100-fd00:162:26::1ff",', "")),
                      "n6")
    assert "ra-only" not in xml     # SLAAC only: libvirt's own line
    forged = xml.replace("</network>", (
        '<dnsmasq:options xmlns:dnsmasq="http://libvirt.org/schemas/network/dnsmasq/1.0">'
        '<dnsmasq:option value="dhcp-range=fd00:162:26::,ra-only,64"/></dnsmasq:options>'
        "</network>"))
    net = parse_network(forged).network
    assert net.ipv6 is not None and net.ipv6.slaac is None
    assert any("ra-only" in x for xs in net.xml_extra.values() for x in xs)


def test_apply_then_plan_is_empty_and_slaac_off_restarts() -> None:
    fake = FakeBackend(version=11_003_000)
    spec = _spec()
    plan = make_plan(spec, read_state(fake))
    assert not plan.errors and run(plan, fake, read_state(fake)).ok
    again = make_plan(spec, read_state(fake))
    assert not again.changes, [a.summary for a in again.actions]
    off = _spec(SPEC.replace("slaac: true", "slaac: false"))
    change = make_plan(off, read_state(fake))
    assert [a.kind for a in change.actions] == ["network.redefine"]
    assert "- dnsmasq option: dhcp-range=fd00:162:26::,ra-only,64" in \
        change.actions[0].details


@pytest.mark.parametrize("version, refused", [
    (NAT66_SINCE - 1000, True), (NAT66_SINCE, False), (9_000_000, False), (None, False)])
def test_nat66_needs_libvirt_6_5(version: int | None, refused: bool) -> None:
    plan = make_plan(_spec(), read_state(FakeBackend(version=version)))
    msgs = [e.message for e in plan.errors]
    if refused:
        assert len(msgs) == 1 and "needs libvirt 6.5 or newer" in msgs[0]
        assert "runs libvirt 6.4.0" in msgs[0] and "mode: route" in msgs[0]
        assert not [a for a in plan.actions if a.target == "network/n6"]
    else:
        assert not msgs and [a.kind for a in plan.actions] == ["network.create"]


# ---------------------------------------------------------------- forwards over IPv6

FWD = """\
networks:
  n6:
    mode: nat
    nat: {ipv6: true}
    ipv4: {address: 10.162.26.1/24, dhcp: 10.162.26.100-10.162.26.199}
    ipv6: {address: "fd00:162:26::1/64", dhcp: "fd00:162:26::100-fd00:162:26::1ff"}
    forwards:
      - {proto: tcp, host_port: 8080, guest: web, guest_port: 80}
guests:
  web:
    interfaces: [{network: n6, ipv4: 10.162.26.10, ipv6: "fd00:162:26::10"}]
"""


def _fwds(text: str) -> list[tuple[str, str | None, tuple[str, ...]]]:
    from kvmnet.render.firewall import resolve

    return [(f.target, f.listen, f.sources) for f in resolve(_spec(text))]


def test_a_dual_stack_guest_is_reached_over_both_families() -> None:
    assert _fwds(FWD) == [("10.162.26.10", None, ()), ("fd00:162:26::10", None, ())]


def test_listen_and_sources_pick_the_family() -> None:
    listen6 = FWD.replace("guest_port: 80}", 'guest_port: 80, listen: "2001:db8:162::1"}')
    assert _fwds(listen6) == [("fd00:162:26::10", "2001:db8:162::1", ())]
    src = FWD.replace("guest_port: 80}", 'guest_port: 80, sources: ["2001:db8:162::/48"]}')
    assert _fwds(src) == [("fd00:162:26::10", None, ("2001:db8:162::/48",))]
    both = FWD.replace("guest_port: 80}",
                       'guest_port: 80, sources: ["10.162.0.0/16", "2001:db8:162::/48"]}')
    assert _fwds(both) == [("10.162.26.10", None, ("10.162.0.0/16",)),
                           ("fd00:162:26::10", None, ("2001:db8:162::/48",))]


def test_the_ipv6_rules_dnat_to_the_guests_ipv6_address() -> None:
    from kvmnet.render.firewall import prerouting_rule, resolve

    f6 = resolve(_spec(FWD))[1]
    expr = json_text(prerouting_rule(f6).expr)
    assert '"family": "ip6", "addr": "fd00:162:26::10", "port": 80' in expr
    assert '"nfproto"}}, "right": "ipv6"' in expr


def json_text(expr: object) -> str:
    import json

    return json.dumps(expr)


@pytest.mark.parametrize("change, where, message", [
    ('listen: "2001:db8:162::1"', "listen",
     "listen 2001:db8:162::1 is IPv6 but web has only an ipv4 on this network: give web's "
     "NIC an ipv6: (a reservation), or forward within its family"),
    ('sources: ["2001:db8:162::/48"]', "sources.0",
     "source 2001:db8:162::/48 is IPv6 but web has only an ipv4 on this network"),
])
def test_ipv6_host_to_ipv4_guest_is_refused(change: str, where: str, message: str) -> None:
    from kvmnet.spec.check import check
    from kvmnet.spec.load import load_text

    text = FWD.replace(', ipv6: "fd00:162:26::10"', "").replace(
        "guest_port: 80}", f"guest_port: 80, {change}}}")
    spec, pos = load_text(text, "t.yaml")
    errs = [p.message for p in check(spec, pos, "t.yaml") if p.severity == "error"]
    assert len(errs) == 1 and errs[0].startswith(f"networks.n6.forwards.0.{where}: ")
    assert message in errs[0]


def test_a_guest_with_only_an_ipv6_is_forwarded_to() -> None:
    text = FWD.replace("ipv4: 10.162.26.10, ", "")
    assert _fwds(text) == [("fd00:162:26::10", None, ())]
