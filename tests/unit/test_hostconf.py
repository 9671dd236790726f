"""Host bridge configuration: golden files per renderer, each output parsed
by the format's own rules, and renderer detection on fake root trees."""

from __future__ import annotations

import configparser
import ipaddress
from pathlib import Path

import pytest
import yaml

from kvmnet.backend.detect import detect_renderer
from kvmnet.errors import LiveError
from kvmnet.model.spec import Spec
from kvmnet.render import (
    host_common,
    host_ifupdown,
    host_netplan,
    host_networkd,
    host_nm,
    hostconf,
    routes,
)
from kvmnet.render import interface as interface_xml
from kvmnet.render.hostconf import (
    RENDERERS,
    file_mode,
    file_modes,
    profile_uuid,
    render_host,
)
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load, load_text
from lab.golden import assert_golden

DATA = Path(__file__).parent.parent / "data" / "host"
CASES = sorted(p.name[: -len(".in.yaml")] for p in DATA.glob("*.in.yaml"))


def _spec(case: str) -> Spec:
    spec, pos = load(DATA / f"{case}.in.yaml")
    assert errors(check(spec, pos)) == [], "golden inputs must be valid specs"
    return spec


def test_cases_present() -> None:
    assert {"seed", "dualstack", "dhcp", "stp"} <= set(CASES)


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, renderer: str) -> None:
    files = render_host(_spec(case), renderer)
    assert_golden(DATA / f"{case}.out" / renderer, files)


@pytest.mark.parametrize("case", CASES)
def test_rendering_is_stable(case: str) -> None:
    spec = _spec(case)
    for render in RENDERERS.values():
        assert render(spec) == render(spec.model_copy(deep=True))


def _nics(spec: Spec, ports: list[str]) -> list[str]:
    """The ports that are NICs (bonds and VLANs: tests/unit/test_hostconf_links.py)."""
    return [p for p in ports if p not in spec.host.bonds and p not in spec.host.vlans]


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(text)
    return parser


# --- netplan -----------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_netplan_is_valid_yaml_of_the_spec(case: str) -> None:
    spec = _spec(case)
    files = render_host(spec, "netplan")
    text = files["etc/netplan/90-kvmnet.yaml"]
    assert set(files) - {"etc/netplan/90-kvmnet.yaml"} == {  # VLAN filtering: drop-ins
        p for p in files if ".d/50-kvmnet-vlan.conf" in p}
    net = yaml.safe_load(text)["network"]
    assert net["version"] == 2 and "renderer" not in net
    for name, hb in spec.host.bridges.items():
        br = net["bridges"][name]
        assert br.get("interfaces", []) == hb.ports
        assert br["dhcp4"] is hb.dhcp
        assert br.get("addresses", []) == [str(a) for a in hb.address]
        assert br["parameters"]["stp"] is hb.stp
        for port in _nics(spec, hb.ports):
            assert net["ethernets"][port]["dhcp4"] is False
        if hb.gateway:
            assert br["routes"][0]["to"] == "default"
            assert ipaddress.ip_address(br["routes"][0]["via"]) == hb.gateway


def test_netplan_nothing_without_bridges() -> None:
    assert render_host(Spec(), "netplan") == {}


# --- NetworkManager ------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_keyfiles_parse_and_link_ports(case: str) -> None:
    spec = _spec(case)
    files = render_host(spec, "networkmanager")
    uuids = set()
    for name, hb in spec.host.bridges.items():
        br = _ini(files[f"{host_nm.DIR}/kvmnet-{name}.nmconnection"])
        assert br["connection"]["type"] == "bridge"
        assert br["connection"]["interface-name"] == name
        assert br["bridge"]["stp"] == ("true" if hb.stp else "false")
        uuids.add(br["connection"]["uuid"])
        for port in _nics(spec, hb.ports):
            p = _ini(files[f"{host_nm.DIR}/kvmnet-{name}-port-{port}.nmconnection"])
            c = p["connection"]
            assert (c["type"], c["interface-name"]) == ("ethernet", port)
            assert c["controller"] == c["master"] == name
            assert c["port-type"] == c["slave-type"] == "bridge"
            uuids.add(c["uuid"])
    assert len(uuids) == sum(1 + len(_nics(spec, hb.ports))
                             for hb in spec.host.bridges.values())


def test_keyfile_uuid_is_deterministic() -> None:
    assert profile_uuid("br0") == profile_uuid("br0") != profile_uuid("br1")
    assert profile_uuid("br0", "eth0") != profile_uuid("br0")


def test_keyfile_addresses() -> None:
    files = render_host(_spec("dualstack"), "networkmanager")
    br = _ini(files[f"{host_nm.DIR}/kvmnet-br0.nmconnection"])
    assert br["ipv4"]["address1"] == "192.168.10.2/24,192.168.10.1"
    assert br["ipv4"]["dns"] == "192.168.10.1;"
    assert br["ipv4"]["route-metric"] == "100"
    assert br["ipv6"]["method"] == "manual"
    assert br["ipv6"]["address1"] == "2001:db8:10::2/64"
    assert br["ethernet"]["mtu"] == "9000"


def test_keyfile_leaves_out_forward_delay_nm_refuses() -> None:
    files = render_host(_spec("edge"), "networkmanager")
    text = files[f"{host_nm.DIR}/kvmnet-br6.nmconnection"]
    assert "forward-delay" not in _ini(text)["bridge"]
    assert "# forward_delay 0 left out" in text


# --- systemd-networkd ------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_networkd_files_parse(case: str) -> None:
    spec = _spec(case)
    files = render_host(spec, "networkd")
    for name, hb in spec.host.bridges.items():
        netdev = _ini(files[f"{host_networkd.DIR}/50-kvmnet-{name}.netdev"])
        assert (netdev["NetDev"]["Name"], netdev["NetDev"]["Kind"]) == (name, "bridge")
        assert netdev["Bridge"]["STP"] == ("yes" if hb.stp else "no")
        network = _ini(files[f"{host_networkd.DIR}/50-kvmnet-{name}.network"])
        assert network["Match"]["Name"] == name
        for port in hb.ports:
            p = _ini(files[f"{host_networkd.DIR}/50-kvmnet-{port}.network"])
            assert p["Match"]["Name"] == port and p["Network"]["Bridge"] == name


def test_networkd_repeats_address_keys() -> None:
    text = render_host(_spec("dualstack"), "networkd")[
        f"{host_networkd.DIR}/50-kvmnet-br0.network"]
    assert "Address=192.168.10.2/24\nAddress=2001:db8:10::2/64\n" in text
    assert "[Route]\nGateway=192.168.10.1\nMetric=100\n" in text
    assert "[Link]\nMTUBytes=9000\n" in text


# --- ifupdown ------------------------------------------------------------------

def test_ifupdown_seed() -> None:
    (path, text), = render_host(_spec("seed"), "ifupdown").items()
    assert path == "etc/network/interfaces.d/kvmnet-br0"
    assert "source /etc/network/interfaces.d/*" in text
    assert "iface enp2s0 inet manual\n" in text
    assert "auto br0\niface br0 inet static\n    address 192.168.1.1/24\n" in text
    assert "    gateway 192.168.1.254\n" in text
    assert "    bridge_ports enp2s0\n    bridge_stp off\n" in text
    assert "mask" not in text.replace("netmask", "")


def test_ifupdown_dhcp_and_inet6() -> None:
    text = render_host(_spec("dhcp"), "ifupdown")["etc/network/interfaces.d/kvmnet-br0"]
    assert "iface br0 inet dhcp\n    metric 50\n" in text
    text = render_host(_spec("dualstack"), "ifupdown")["etc/network/interfaces.d/kvmnet-br0"]
    assert "iface br0 inet6 static\n    address 2001:db8:10::2/64\n" in text
    assert "    dns-nameservers 192.168.10.1 2001:db8:10::1\n" in text
    assert text.count("bridge_ports") == 1


def _stanzas(text: str) -> dict[str, list[str]]:
    """iface header -> option lines: a minimal reading of interfaces(5)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("iface "):
            current = line
            out[current] = []
        elif line.startswith("auto "):
            current = None
        else:
            assert current is not None and line.startswith("    "), line
            out[current].append(line.strip())
    return out


@pytest.mark.parametrize("case", CASES)
def test_ifupdown_stanzas_are_well_formed(case: str) -> None:
    spec = _spec(case)
    for name, hb in spec.host.bridges.items():
        text = render_host(spec, "ifupdown")[f"{host_ifupdown.DIR}/kvmnet-{name}"]
        stanzas = _stanzas(text)
        assert f"auto {name}" in text.splitlines()
        for port in hb.ports:
            if port in spec.host.bonds:  # (its own file: tests/unit/test_hostconf_links.py)
                continue
            assert f"iface {port} inet manual" in stanzas
        ours = [h for h in stanzas if h.split()[1] == name]
        assert ours and all(h.split()[2] in ("inet", "inet6") for h in ours)


# --- the module as a whole ---------------------------------------------------------

def test_file_modes() -> None:
    files = {p: t for r in RENDERERS.values() for p, t in r(_spec("seed")).items()}
    modes = file_modes(files)
    assert modes["etc/netplan/90-kvmnet.yaml"] == 0o600
    assert modes[f"{host_nm.DIR}/kvmnet-br0.nmconnection"] == 0o600
    assert modes["etc/network/interfaces.d/kvmnet-br0"] == 0o644
    assert file_mode("etc/systemd/network/50-kvmnet-br0.netdev") == 0o644


def test_render_host_uses_spec_renderer_and_refuses_auto() -> None:
    spec, _ = load_text("host: {renderer: networkd, bridges: {br0: {ports: [eth0]}}}")
    assert render_host(spec) == RENDERERS["networkd"](spec)
    with pytest.raises(ValueError, match="detect_renderer"):
        render_host(Spec())


def test_every_file_has_the_header() -> None:
    spec = _spec("dualstack")
    for render in RENDERERS.values():
        for text in render(spec).values():
            assert text.startswith(host_common.HEADER)


@pytest.mark.parametrize("module", [host_common, host_ifupdown, host_netplan, host_nm,
                                    host_networkd, hostconf, routes, interface_xml])
def test_render_modules_are_pure(module: object) -> None:
    """No I/O in render: the caller writes the files (DESIGN.md, 'render is pure')."""
    source = Path(str(getattr(module, "__file__", ""))).read_text()
    for word in ("import libvirt", "pyroute2", "subprocess", "open("):
        assert word not in source


# --- detect_renderer ------------------------------------------------------------------

def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


IFUPDOWN_LO = "auto lo\niface lo inet loopback\n"
IFUPDOWN_ETH = IFUPDOWN_LO + "allow-hotplug enp2s0\niface enp2s0 inet dhcp\n"
WANTS = "etc/systemd/system/multi-user.target.wants"


@pytest.mark.parametrize(("files", "expected"), [
    ({"etc/netplan/50-cloud-init.yaml": "network: {version: 2}\n",
      "etc/network/interfaces": IFUPDOWN_LO}, "netplan"),
    ({f"{WANTS}/NetworkManager.service": "",
      "etc/network/interfaces": IFUPDOWN_ETH}, "networkmanager"),
    ({"etc/NetworkManager/system-connections/wired.nmconnection": "[connection]\n"},
     "networkmanager"),
    ({"etc/NetworkManager/NetworkManager.conf": "[main]\nplugins=ifupdown,keyfile\n",
      "etc/network/interfaces": IFUPDOWN_LO}, "networkmanager"),
    ({"etc/NetworkManager/NetworkManager.conf": "[ifupdown]\nmanaged=true\n",
      "etc/network/interfaces": IFUPDOWN_ETH}, "networkmanager"),
    ({"etc/NetworkManager/NetworkManager.conf": "[ifupdown]\nmanaged=false\n",
      "etc/network/interfaces": IFUPDOWN_ETH}, "ifupdown"),
    ({"etc/systemd/network/20-wired.network": "[Match]\nName=en*\n"}, "networkd"),
    ({f"{WANTS}/systemd-networkd.service": "",
      "etc/network/interfaces": IFUPDOWN_LO}, "networkd"),
    ({"etc/systemd/network/20-wired.network": "[Match]\nName=en*\n",
      "etc/network/interfaces": IFUPDOWN_ETH}, "ifupdown"),
    ({"etc/network/interfaces": IFUPDOWN_LO}, "ifupdown"),
    ({"etc/network/interfaces": IFUPDOWN_LO,
      "etc/network/interfaces.d/kvmnet-br0": "iface br0 inet manual\n"}, "ifupdown"),
])
def test_detect_renderer(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert detect_renderer(_tree(tmp_path, files)) == expected


def test_detect_renderer_finds_nothing(tmp_path: Path) -> None:
    with pytest.raises(LiveError, match="host.renderer"):
        detect_renderer(tmp_path)
