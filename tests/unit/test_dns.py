"""DNS (issue 22): the dnsmasq options kvmnet writes itself (wildcards, aliases, the
reservations' PTR records) and their way back from libvirt's XML, the second wall in
front of dnsmasq, and the checks: RFC 1123 names, forwarders that loop, records that
shadow a reservation. The live updates of TXT and SRV records are plan cases
(tests/cases/upd-dns-records, net-dns-*); the real thing is tests/e2e/test_7_dns.py."""

from __future__ import annotations

import pytest
from lxml import etree

from kvmnet.errors import RenderError
from kvmnet.model.spec import Dns, DnsCname, DnsForwarder, DnsWildcard, IPConfig, Network, Spec
from kvmnet.parse.network import parse_network
from kvmnet.render.dnsmasq import DNSMASQ_NS, recognise
from kvmnet.render.network import build_network, network_xml
from kvmnet.spec.check import check
from kvmnet.spec.checks.dns import rfc1123_problem
from kvmnet.spec.load import load_text

OPTS = f'<dnsmasq:options xmlns:dnsmasq="{DNSMASQ_NS}">{{}}</dnsmasq:options>'


def _opt(*values: str) -> str:
    return OPTS.format("".join(f'<dnsmasq:option value="{v}"/>' for v in values))


def _spec(text: str) -> Spec:
    return load_text(text, "t.yaml")[0]


NET = """
networks:
  n:
    domain: lab.test
    ipv4:
      address: 10.156.1.1/24
      hosts: [{mac: "52:54:00:00:00:01", name: db1, ip: 10.156.1.21}]
    dns:
      wildcards: [{domain: apps.lab.test, ip: 10.156.1.30}]
      cnames: [{name: www.lab.test, target: db1.lab.test}]
      ptr: true
"""


def _options(xml: str) -> list[str]:
    root = etree.fromstring(xml.encode())
    return [o.get("value") for o in root.iter(f"{{{DNSMASQ_NS}}}option")]


def test_kvmnet_writes_only_its_three_kinds_of_option() -> None:
    assert _options(network_xml(_spec(NET), "n")) == [
        "address=/apps.lab.test/10.156.1.30", "cname=www.lab.test,db1.lab.test",
        "ptr-record=21.1.156.10.in-addr.arpa,db1.lab.test"]


def test_the_users_own_options_join_kvmnets_in_one_element_and_come_back_as_they_were(
        ) -> None:
    spec = _spec(NET + "    xml_extra:\n      '': ['" + _opt("log-queries", "cname=a,b,c")
                 + "']\n")
    xml = network_xml(spec, "n")
    root = etree.fromstring(xml.encode())
    assert len(root.findall(f"{{{DNSMASQ_NS}}}options")) == 1
    assert _options(xml)[3:] == ["log-queries", "cname=a,b,c"]
    parsed = parse_network(xml)
    assert parsed.network == spec.networks["n"]
    assert parsed.network.xml_extra == {"": [_opt("log-queries", "cname=a,b,c")]}


def test_imported_options_of_kvmnets_form_are_read_into_the_keys() -> None:
    xml = (f'<network><name>n</name><ip address="10.156.1.1" prefix="24"/>'
           f'{_opt("address=/x.test/10.156.1.9", "cname=a.test,b.test")}</network>')
    net = parse_network(xml).network
    assert net.dns is not None
    assert net.dns.wildcards == [DnsWildcard(domain="x.test", ip="10.156.1.9")]
    assert net.dns.cnames == [DnsCname(name="a.test", target="b.test")]
    assert net.xml_extra == {}


def test_ptr_records_that_are_not_the_reservations_stay_verbatim() -> None:
    stray = "ptr-record=9.1.156.10.in-addr.arpa,other.lab.test"
    xml = network_xml(_spec(NET), "n").replace(
        "ptr-record=21.1.156.10.in-addr.arpa,db1.lab.test", stray)
    net = parse_network(xml).network
    assert net.dns is not None and net.dns.ptr is None
    assert net.xml_extra == {"": [_opt(stray)]}


@pytest.mark.parametrize(("option", "found"), [
    ("address=/apps.lab/10.0.0.1", ("address", ("apps.lab", "10.0.0.1"))),
    ("address=/a/b/10.0.0.1", None),              # several domains: not kvmnet's
    ("address=/apps.lab/", None),                 # NXDOMAIN form
    ("address=/apps.lab/010.0.0.1", None),        # not the canonical text
    ("cname=a.lab,b.lab", ("cname", ("a.lab", "b.lab"))),
    ("cname=a.lab,b.lab,60", None),               # a TTL: not kvmnet's
    ("ptr-record=1.0.0.10.in-addr.arpa,x.lab", ("ptr", ("1.0.0.10.in-addr.arpa", "x.lab"))),
    ("dhcp-script=/tmp/x", None),
    ("cname", None),
    ("local=/home.test/", ("local", ("home.test",))),
    ("local=/a/b/", None),
])
def test_recognise(option: str, found: object) -> None:
    assert recognise(option) == found


@pytest.mark.parametrize("dns", [
    Dns.model_construct(wildcards=[DnsWildcard.model_construct(
        domain="x/10.0.0.1\ndhcp-script=/tmp/x", ip="10.0.0.1")], cnames=[], ptr=None),
    Dns.model_construct(wildcards=[], cnames=[DnsCname.model_construct(
        name="a.lab,b.lab\nconf-file=/tmp/x", target="c.lab")], ptr=None),
    Dns.model_construct(wildcards=[DnsWildcard.model_construct(
        domain="x.lab", ip="10.0.0.1/10.0.0.2")], cnames=[], ptr=None),
    Dns.model_construct(hosts=[], srv=[], forwarders=[DnsForwarder.model_construct(
        domain="a.lab/#", addr=None)], txt=[], wildcards=[], cnames=[], ptr=None),
])
def test_the_second_wall_refuses_what_skipped_validation(dns: Dns) -> None:
    """Models that skipped validation (model_construct) never reach dnsmasq's config."""
    defaults = {k: getattr(Dns(), k) for k in Dns.model_fields if k not in dns.__dict__}
    dns.__dict__.update(defaults)
    net = Network(ipv4=IPConfig(address="10.156.1.1/24"))
    net = net.model_copy(update={"dns": dns})
    with pytest.raises(RenderError):
        build_network("n", net)


def _findings(text: str) -> list[tuple[str, str]]:
    spec, pos = load_text(text, "t.yaml")
    return [(p.severity, p.message) for p in check(spec, pos, "t.yaml")]


@pytest.mark.parametrize(("name", "bad"), [
    ("web-1.lab.example", False), ("a", False), ("x." * 100 + "y", False),
    ("web_1", True), ("-web", True), ("web-", True), ("a..b", True), ("a" * 64, True),
    ("x." * 127 + "y", True),
])
def test_rfc1123(name: str, bad: bool) -> None:
    assert (rfc1123_problem(name) is not None) == bad


def test_names_that_are_no_host_names_are_refused_where_written() -> None:
    got = _findings("""
networks:
  n:
    domain: lab_1.test
    ipv4: {address: 10.156.1.1/24, hosts: [{mac: "52:54:00:00:00:01", name: db_1, ip: 10.156.1.2}]}
    dns:
      hosts: [{ip: 10.156.1.5, names: [nas-]}]
      cnames: [{name: www.lab.test, target: web_1.lab.test}]
      wildcards: [{domain: apps..lab.test, ip: 10.156.1.6}]
""")
    assert len([m for s, m in got if s == "error" and "RFC 1123" in m]) == 5, got
    for where in ("networks.n.domain", "networks.n.ipv4.hosts.0.name",
                  "networks.n.dns.hosts.0.names.0", "networks.n.dns.cnames.0.target",
                  "networks.n.dns.wildcards.0.domain"):
        assert any(where in m for _, m in got), (where, got)


def test_a_guest_name_that_is_no_host_name_is_a_warning() -> None:
    got = _findings("""
networks:
  n: {ipv4: {address: 10.156.1.1/24}}
guests:
  web_1: {interfaces: [{network: n, ipv4: 10.156.1.10}]}
""")
    assert [s for s, m in got if "RFC 1123" in m] == ["warning"], got


def test_guest_names_are_checked_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """One walk of the guests for the whole spec, not one per network: checking the
    names of 5000 guests once for each of 1000 networks made `validate` of the bench's
    scale file take minutes. Each guest with an ipv4 is still warned on its network."""
    import kvmnet.spec.checks.dns as dns_checks

    names: list[str] = []

    def counted(name: str) -> str | None:
        names.append(name)
        return rfc1123_problem(name)

    monkeypatch.setattr(dns_checks, "rfc1123_problem", counted)
    nets = "".join(f"  n{i}: {{ipv4: {{address: 10.156.{i}.1/24}}}}\n" for i in range(8))
    guests = "".join(f"  g_{i}: {{interfaces: [{{network: n{i}, ipv4: 10.156.{i}.10}}]}}\n"
                     for i in range(8))
    got = _findings(f"networks:\n{nets}guests:\n{guests}")
    assert sorted(n for n in names if n.startswith("g_")) == [f"g_{i}" for i in range(8)]
    warned = [m for s, m in got if "RFC 1123" in m and s == "warning"]
    assert len(warned) == 8, got
    for i in range(8):
        assert sum(f"guest g_{i} is registered in network n{i}'s" in m for m in warned) == 1


LOOP = """
host: {{resolve_guests: {resolve}}}
networks:
  n:
    domain: lab.test
    domain_local: {local}
    ipv4: {{address: 10.156.1.1/24}}
    dns:
      forwarders: [{fwd}]
"""


@pytest.mark.parametrize(("resolve", "local", "fwd", "loop"), [
    ("false", "false", "10.156.1.1", "own address"),
    ("false", "false", "{domain: x.test, addr: 10.156.1.1}", "own address"),
    ("true", "false", "127.0.0.53", "host's own resolver"),
    ("true", "false", "{domain: sub.lab.test, addr: 127.0.0.53}", "host's own resolver"),
    ("true", "false", "{domain: other.test, addr: 127.0.0.53}", None),
    ("true", "true", "127.0.0.53", None),         # the domain never goes upstream
    ("false", "false", "127.0.0.53", None),       # resolved does not send it back
    ("true", "false", "198.51.100.53", None),
    ("true", "false", "{domain: home.test, addr: none}", None),
])
def test_forwarders_that_loop_are_refused(resolve: str, local: str, fwd: str,
                                          loop: str | None) -> None:
    got = _findings(LOOP.format(resolve=resolve, local=local, fwd=fwd))
    errs = [m for s, m in got if s == "error"]
    if loop is None:
        assert errs == [], got
    else:
        assert len(errs) == 1 and loop in errs[0] and "loop" in errs[0], got


def test_addr_none_is_a_local_only_domain() -> None:
    """dnsmasq's local=/DOMAIN/, not libvirt's <forwarder domain=.../>: libvirt writes
    that as server=/DOMAIN/#, which dnsmasq forwards to the usual servers (the lab saw
    it: tests/e2e/test_7_dns.py)."""
    spec = _spec("networks:\n  n:\n    ipv4: {address: 10.156.1.1/24}\n    dns:\n"
                 "      forwarders: [{domain: home.test, addr: none}]\n")
    assert spec.networks["n"].dns is not None
    assert spec.networks["n"].dns.forwarders == [DnsForwarder(domain="home.test",
                                                              local_only=True)]
    xml = network_xml(spec, "n")
    assert "<forwarder" not in xml and _options(xml) == ["local=/home.test/"]
    assert parse_network(xml).network == spec.networks["n"]
    assert "addr: none (local_only) needs domain" in str(_findings_or_error(
        "networks:\n  n:\n    ipv4: {address: 10.156.1.1/24}\n    dns:\n"
        "      forwarders: [{addr: none}]\n"))


def _findings_or_error(text: str) -> object:
    try:
        return _findings(text)
    except Exception as e:  # noqa: BLE001 - the loader's error is what is looked at
        return e


def test_records_that_shadow_a_reservation_are_warned() -> None:
    got = _findings("""
networks:
  n:
    domain: lab.test
    ipv4: {address: 10.156.1.1/24, hosts: [{mac: "52:54:00:00:00:01", name: db1, ip: 10.156.1.2}]}
    dns:
      hosts:
        - {ip: 10.156.1.9, names: [db1.lab.test]}
        - {ip: 10.156.1.10, names: [web1]}
        - {ip: 10.156.1.2, names: [db1]}
      cnames: [{name: web1, target: db1.lab.test}]
guests:
  web1: {interfaces: [{network: n, ipv4: 10.156.1.10}]}
""")
    warns = [m for s, m in got if s == "warning"]
    assert len(warns) == 2, got
    assert "dns.hosts.0.names.0" in warns[0] and "10.156.1.2" in warns[0]
    assert "dns.cnames.0.name" in warns[1] and "hides" in warns[1]
