"""Host bridges' IPv6 in the four renderers (issue 23, point 2): static addresses, the
IPv6 default gateway (gateway6, often the router's link-local address), and router
advertisements (slaac:). Each format is read back by its own tool where the machine
has it (`netplan generate` into a temporary root, `ifup --no-act` of the ifupdown
scripts/setup unpacks), else by its rules
(ini for networkd and NetworkManager keyfiles); the golden files are in
tests/data/host/{ipv6,slaac}.*, checked with the others by test_hostconf.py.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kvmnet.errors import RenderError
from kvmnet.model.spec import HostBridge, Spec
from kvmnet.render.hostconf import render_host
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load, load_text

DATA = Path(__file__).parent.parent / "data" / "host"
CASES = ("ipv6", "slaac", "dualstack", "edge")
NETPLAN = shutil.which("netplan")
# ifupdown unpacked, never installed (its networking service would take the machine's
# links): scripts/setup puts it there
_IFUP = Path(__file__).parents[2] / ".testdata/ifupdown/sbin/ifup"
IFUP = str(_IFUP) if _IFUP.exists() else None


def _spec(case: str) -> Spec:
    spec, pos = load(DATA / f"{case}.in.yaml")
    assert errors(check(spec, pos)) == []
    return spec


def _sections(text: str) -> list[tuple[str, dict[str, list[str]]]]:
    """An ini file as (section, {key: [values]}), sections and keys as repeated."""
    out: list[tuple[str, dict[str, list[str]]]] = []
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            out.append((line[1:-1], {}))
        elif "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[-1][1].setdefault(k, []).append(v)
    return out


def _gateways(hb: HostBridge) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return {g for g in (hb.gateway_for(4), hb.gateway_for(6)) if g is not None}


# -- the spec ----------------------------------------------------------------------

def test_gateway_for_each_version() -> None:
    spec, _ = load_text("host: {bridges: {br0: {gateway: 192.0.2.1, gateway6: 'fe80::1'}, "
                        "br6: {gateway: '2001:db8::1'}}}")
    br0, br6 = spec.host.bridges["br0"], spec.host.bridges["br6"]
    assert (str(br0.gateway_for(4)), str(br0.gateway_for(6))) == ("192.0.2.1", "fe80::1")
    assert (br6.gateway_for(4), str(br6.gateway_for(6))) == (None, "2001:db8::1")


def test_ipv4_gateway6_is_refused_where_it_is_written(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("host:\n  bridges:\n    br0:\n      gateway6: 192.0.2.1\n")
    r = subprocess.run([str(Path(sys.executable).parent / "kvmnet"), "validate", str(f)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1
    assert f"{f}:4:17: error:" in r.stderr and "write it as gateway: 192.0.2.1" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("yaml_text", "at", "says"), [
    ("{gateway: '2001:db8::1', gateway6: 'fe80::1', address: ['2001:db8::2/64']}",
     "gateway", "write the IPv4 gateway here"),
    ("{gateway6: '2001:db8:9::1', address: ['2001:db8::2/64']}",
     "gateway6", "not in any of br0's subnets (2001:db8::/64)"),
    ("{gateway6: 'fe80::1', slaac: true}", "slaac", "give metric:"),
    ("{gateway6: 'fe80::1', address: [192.0.2.2/24]}", "gateway6", "write slaac: true"),
])
def test_ipv6_gateway_findings(yaml_text: str, at: str, says: str) -> None:
    spec, pos = load_text(f"host: {{bridges: {{br0: {yaml_text}}}}}")
    found = [p for p in check(spec, pos) if p.message.startswith(f"host.bridges.br0.{at}:")]
    assert len(found) == 1 and says in found[0].message, check(spec, pos)


def test_link_local_gateway6_needs_no_subnet() -> None:
    spec, pos = load_text("host: {bridges: {br0: {gateway6: 'fe80::1', "
                          "address: ['2001:db8::2/64']}}}")
    assert check(spec, pos) == []


def test_a_scoped_gateway6_never_loads() -> None:
    with pytest.raises(Exception, match="scope id"):
        load_text("host: {bridges: {br0: {gateway6: 'fe80::1%eth0'}}}")


def test_renderers_refuse_a_scoped_gateway6_again() -> None:
    """A model that skipped validation: the second wall (render.guard) stops it."""
    bad = HostBridge.model_construct(
        ports=["eth0"], address=[], gateway=None, metric=5, dhcp=False, slaac=True,
        gateway6=ipaddress.ip_address("fe80::1%$(reboot)"), stp=False, forward_delay=None,
        mtu=None, dns=[], check=None, mac=None)
    spec = Spec.model_construct(**{**Spec().__dict__,
                                   "host": Spec().host.model_copy(update={"bridges":
                                                                          {"br0": bad}})})
    for renderer in ("ifupdown", "netplan", "networkmanager", "networkd"):
        with pytest.raises(RenderError, match="scope id"):
            render_host(spec, renderer)


# -- netplan: netplan's own parser ------------------------------------------------------

@pytest.mark.skipif(NETPLAN is None, reason="netplan is not installed (apt-get install "
                    "netplan.io: scripts/setup test does)")
@pytest.mark.parametrize("case", CASES)
def test_netplan_generate_takes_it(case: str, tmp_path: Path) -> None:
    """netplan reads the file and writes networkd units: each gateway becomes a [Route]
    or Gateway=, slaac: becomes IPv6AcceptRA=."""
    spec = _spec(case)
    for path, text in render_host(spec, "netplan").items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        (tmp_path / path).chmod(0o600)
    r = subprocess.run([str(NETPLAN), "generate", "--root-dir", str(tmp_path)],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    for name, hb in spec.host.bridges.items():
        unit = _sections((tmp_path / f"run/systemd/network/10-netplan-{name}.network")
                         .read_text())
        got = {ipaddress.ip_address(v) for _, keys in unit for v in keys.get("Gateway", [])}
        assert got == _gateways(hb)
        net = next(keys for sec, keys in unit if sec == "Network")
        want = None if hb.slaac is None else ("yes" if hb.slaac else "no")
        assert net.get("IPv6AcceptRA", [None]) == [want]
        assert sorted(net.get("Address", [])) == sorted(str(a) for a in hb.address)


# -- ifupdown: ifup's own parser, without acting ---------------------------------------

@pytest.mark.skipif(IFUP is None, reason="ifupdown's ifup is not unpacked (./scripts/setup "
                    "puts it in .testdata/ifupdown)")
@pytest.mark.parametrize("case", CASES)
def test_ifup_no_act_runs_the_ipv6_commands(case: str, tmp_path: Path) -> None:
    """`ifup --no-act` parses the file and prints what it would run: the addresses, the
    IPv6 default route and the accept_ra sysctl slaac: asks for."""
    spec = _spec(case)
    for path, text in render_host(spec, "ifupdown").items():
        name = path.rsplit("kvmnet-", 1)[1]
        hb = spec.host.bridges[name]
        (tmp_path / "f").write_text(text)
        r = subprocess.run([str(IFUP), "--no-act", "-i", str(tmp_path / "f"), "--state-dir",
                            str(tmp_path), name], capture_output=True, text=True, check=False)
        out = r.stdout + r.stderr
        for a in hb.address:
            assert (f"ip -6 addr add {a}" if a.version == 6 else f"ip addr add {a.ip}") in out
        gw6 = hb.gateway_for(6)
        if gw6 is not None:
            assert f"default via {gw6} " in out and "ip -6 route" in out, out
        if hb.slaac:
            assert f"net.ipv6.conf.{name}.accept_ra=2" in out, out
            assert f"net.ipv6.conf.{name}.autoconf=1" in out, out
        elif hb.slaac is False:
            assert f"net.ipv6.conf.{name}.accept_ra=0" in out, out


# -- networkd and NetworkManager: by their ini rules --------------------------------

@pytest.mark.parametrize("case", CASES)
def test_networkd_ipv6(case: str) -> None:
    spec = _spec(case)
    files = render_host(spec, "networkd")
    for name, hb in spec.host.bridges.items():
        unit = _sections(files[f"etc/systemd/network/50-kvmnet-{name}.network"])
        got = {ipaddress.ip_address(v) for _, keys in unit for v in keys.get("Gateway", [])}
        assert got == _gateways(hb)
        routes = [keys for sec, keys in unit if sec == "Route"]
        assert len(routes) == (len(got) if hb.metric is not None else 0)
        net = next(keys for sec, keys in unit if sec == "Network")
        want = None if hb.slaac is None else ("yes" if hb.slaac else "no")
        assert net.get("IPv6AcceptRA", [None]) == [want]


@pytest.mark.parametrize("case", CASES)
def test_keyfile_ipv6(case: str) -> None:
    spec = _spec(case)
    files = render_host(spec, "networkmanager")
    for name, hb in spec.host.bridges.items():
        prof = dict(_sections(files[f"etc/NetworkManager/system-connections/kvmnet-{name}"
                                    ".nmconnection"]))
        v6 = {k: v[0] for k, v in prof["ipv6"].items()}
        static = [str(a) for a in hb.address if a.version == 6]
        assert [v6[f"address{i}"].split(",")[0] for i in range(1, len(static) + 1)] == static
        gw6 = hb.gateway_for(6)
        written = v6.get("gateway") or (v6.get("address1", ",").split(",") + [""])[1] or None
        assert (str(gw6) if gw6 is not None and v6["method"] != "disabled" else None) \
            == written
        if hb.slaac:
            assert (v6["method"], v6["addr-gen-mode"]) == ("auto", "eui64")
        elif hb.slaac is False:
            assert v6["method"] in ("manual", "disabled")
