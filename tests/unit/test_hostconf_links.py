"""Bonds and VLAN sub-interfaces (host.bonds, host.vlans) in the four host renderers,
each format read by its own parser: `netplan generate` into a temporary root, libnm's
keyfile reader (NetworkManager's own code, through the system Python's gi), ifupdown's
ifquery (unpacked by scripts/setup into .testdata/ifupdown), and networkd's INI as
test_hostconf reads it. Plus the checks of host.bonds and host.vlans, and the second
wall (render.guard) against values that skipped validation."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from kvmnet.errors import RenderError
from kvmnet.model.spec import Host, HostBond, HostBridge, HostVlan, Spec
from kvmnet.render.hostconf import RENDERERS, render_host
from kvmnet.spec.check import check, check_file, errors
from kvmnet.spec.load import load, load_text

DATA = Path(__file__).parent.parent / "data" / "host"
CASES = sorted(p.name[: -len(".in.yaml")] for p in DATA.glob("*.in.yaml"))
NETPLAN = shutil.which("netplan") or "/usr/sbin/netplan"
IFQUERY = Path(__file__).parents[2] / ".testdata/ifupdown/sbin/ifquery"
SYS_PYTHON = "/usr/bin/python3"

NM_READ = """
import json, sys
import gi
gi.require_version("NM", "1.0")
from gi.repository import GLib, NM
out = {}
for path in sys.argv[1:]:
    kf = GLib.KeyFile()
    kf.load_from_file(path, GLib.KeyFileFlags.NONE)
    try:
        c = NM.keyfile_read(kf, "/etc/NetworkManager/system-connections",
                            NM.KeyfileHandlerFlags.NONE, None, None)
        c.normalize()
        c.verify()
    except GLib.Error as e:
        out[path] = {"error": e.message}
        continue
    s = c.get_setting_connection()
    d = {"type": s.get_connection_type(), "iface": s.get_interface_name(),
         "controller": s.get_master(), "port_type": s.get_slave_type()}
    b = c.get_setting_bond()
    if b:
        d["bond"] = dict(b.get_option(i)[1:] for i in range(b.get_num_options()))
    v = c.get_setting_vlan()
    if v:
        d["vlan"] = [v.get_parent(), v.get_id()]
    br = c.get_setting_bridge()
    if br:
        d["filtering"] = [br.get_vlan_filtering(), br.get_vlan_default_pvid()]
    bp = c.get_setting_bridge_port()
    if bp:
        d["port_vlans"] = [bp.get_vlan(i).to_str() for i in range(bp.get_num_vlans())]
    out[path] = d
print(json.dumps(out))
"""


def _spec(case: str) -> Spec:
    spec, pos = load(DATA / f"{case}.in.yaml")
    assert errors(check(spec, pos)) == []
    return spec


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        (root / rel).chmod(0o600)


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None,
                                       comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read_string(text)
    return parser


# --- netplan: `netplan generate` is the judge ----------------------------------------

def _netplan(tmp_path: Path, spec: Spec) -> dict[str, configparser.ConfigParser]:
    if not Path(NETPLAN).exists():
        pytest.skip("netplan is not installed (./scripts/setup installs netplan.io)")
    _write(tmp_path, render_host(spec, "netplan"))
    r = subprocess.run([NETPLAN, "generate", "--root-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "run/systemd/network"
    return {p.name: _ini(p.read_text()) for p in out.iterdir()}


@pytest.mark.parametrize("case", CASES)
def test_netplan_generate_accepts_every_case(tmp_path: Path, case: str) -> None:
    spec = _spec(case)
    units = _netplan(tmp_path, spec)
    for name in spec.host.bridges:
        assert units[f"10-netplan-{name}.netdev"]["NetDev"]["Kind"] == "bridge"


def test_netplan_generate_makes_the_bond_and_vlans(tmp_path: Path) -> None:
    u = _netplan(tmp_path, _spec("bond"))
    bond0 = u["10-netplan-bond0.netdev"]
    assert (bond0["NetDev"]["Kind"], bond0["Bond"]["Mode"]) == ("bond", "active-backup")
    assert bond0["Bond"]["MIIMonitorSec"] == "100ms"
    bond1 = u["10-netplan-bond1.netdev"]["Bond"]
    assert (bond1["Mode"], bond1["LACPTransmitRate"], bond1["TransmitHashPolicy"]) == \
        ("802.3ad", "fast", "layer3+4")
    eno1, eno2 = u["10-netplan-eno1.network"], u["10-netplan-eno2.network"]
    assert eno1["Network"]["Bond"] == eno2["Network"]["Bond"] == "bond0"
    assert eno1["Network"]["PrimarySlave"] == "true" and "PrimarySlave" not in eno2["Network"]
    assert u["10-netplan-bond0.network"]["Network"]["Bridge"] == "br0"
    assert u["10-netplan-bond0.network"]["Network"]["VLAN"] == "bond0.100"
    assert u["10-netplan-bond0.100.netdev"]["VLAN"]["Id"] == "100"
    assert u["10-netplan-bond0.100.network"]["Network"]["Bridge"] == "br100"
    assert u["10-netplan-vlan200.netdev"]["VLAN"]["Id"] == "200"
    assert u["10-netplan-bond1.network"]["Network"]["VLAN"] == "vlan200"
    assert u["10-netplan-bond0.netdev"]["NetDev"]["MTUBytes"] == "9000"


def test_netplan_generate_vlan_of_a_bridged_nic(tmp_path: Path) -> None:
    u = _netplan(tmp_path, _spec("vlanif"))
    eno1 = u["10-netplan-eno1.network"]["Network"]
    assert (eno1["Bridge"], eno1["VLAN"]) == ("br0", "eno1.100")
    assert u["10-netplan-eno1.100.network"]["Network"]["Bridge"] == "br100"


# --- NetworkManager: libnm's keyfile reader ------------------------------------------

def _nm(tmp_path: Path, spec: Spec) -> dict[str, dict[str, object]]:
    probe = subprocess.run([SYS_PYTHON, "-c", "import gi; gi.require_version('NM', '1.0')"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("libnm's GObject bindings are not installed (./scripts/setup installs "
                    "gir1.2-nm-1.0 and python3-gi)")
    files = render_host(spec, "networkmanager")
    _write(tmp_path, files)
    r = subprocess.run([SYS_PYTHON, "-c", NM_READ, *(str(tmp_path / f) for f in files)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    return {Path(p).name.removesuffix(".nmconnection"): d for p, d in got.items()}


@pytest.mark.parametrize("case", CASES)
def test_libnm_reads_every_keyfile(tmp_path: Path, case: str) -> None:
    for name, d in _nm(tmp_path, _spec(case)).items():
        assert "error" not in d, (name, d)


def test_libnm_sees_bond_ports_and_vlans(tmp_path: Path) -> None:
    p = _nm(tmp_path, _spec("bond"))
    assert p["kvmnet-bond0"]["type"] == "bond"
    assert (p["kvmnet-bond0"]["controller"], p["kvmnet-bond0"]["port_type"]) == \
        ("br0", "bridge")
    assert p["kvmnet-bond0"]["bond"] == {"mode": "active-backup", "miimon": "100",
                                         "primary": "eno1"}
    assert p["kvmnet-bond1"]["bond"] == {"mode": "802.3ad", "miimon": "100",
                                         "lacp_rate": "fast",
                                         "xmit_hash_policy": "layer3+4"}
    assert p["kvmnet-bond1"]["controller"] is None
    for bond, nic in (("bond0", "eno1"), ("bond0", "eno2"), ("bond1", "enp3s0f0")):
        d = p[f"kvmnet-{bond}-port-{nic}"]
        assert (d["iface"], d["controller"], d["port_type"]) == (nic, bond, "bond")
    assert p["kvmnet-bond0.100"]["vlan"] == ["bond0", 100]
    assert p["kvmnet-bond0.100"]["controller"] == "br100"
    assert p["kvmnet-vlan200"]["vlan"] == ["bond1", 200]
    assert not any(k.startswith("kvmnet-br0-port-") for k in p)  # bond0 is br0's port


# --- ifupdown: ifquery reads the files as ifup would --------------------------------

def _ifquery(tmp_path: Path, spec: Spec, *args: str) -> str:
    if not IFQUERY.exists():
        pytest.skip("ifupdown's ifquery is not unpacked (./scripts/setup puts it in "
                    ".testdata/ifupdown)")
    _write(tmp_path, render_host(spec, "ifupdown"))
    interfaces = tmp_path / "interfaces"
    interfaces.write_text(f"source {tmp_path}/etc/network/interfaces.d/*\n")
    r = subprocess.run([str(IFQUERY), "-i", str(interfaces), "--state-dir",
                        str(tmp_path / "state"), *args],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _options(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())


@pytest.mark.parametrize("case", CASES)
def test_ifquery_reads_every_case(tmp_path: Path, case: str) -> None:
    spec = _spec(case)
    listed = _ifquery(tmp_path, spec, "--list").split()
    assert set(spec.host.bridges) | set(spec.host.bonds) <= set(listed)
    for name, hb in spec.host.bridges.items():
        got = _options(_ifquery(tmp_path, spec, name))
        assert got["bridge_ports"] == (" ".join(hb.ports) or "none")


def test_ifquery_bonds_come_up_before_their_bridges(tmp_path: Path) -> None:
    spec = _spec("bond")
    listed = _ifquery(tmp_path, spec, "--list").split()
    assert listed.index("bond0") < listed.index("br0") < listed.index("br100")
    assert listed.index("bond1") < listed.index("br200")
    bond0 = _options(_ifquery(tmp_path, spec, "bond0"))
    assert bond0 == {"bond-slaves": "eno1 eno2", "bond-mode": "active-backup",
                     "bond-miimon": "100", "bond-primary": "eno1", "mtu": "9000"}
    bond1 = _options(_ifquery(tmp_path, spec, "bond1"))
    assert (bond1["bond-lacp-rate"], bond1["bond-xmit-hash-policy"]) == ("fast", "layer3+4")
    br100 = _options(_ifquery(tmp_path, spec, "br100"))
    assert br100["pre-up"].endswith("ip link add link bond0 name bond0.100 type vlan id 100")
    assert br100["post-down"].startswith("ip link del dev bond0.100")
    br200 = _options(_ifquery(tmp_path, spec, "br200"))
    assert "link bond1 name vlan200 type vlan id 200" in br200["pre-up"]


# --- systemd-networkd ---------------------------------------------------------------

def test_networkd_bond_vlan_units() -> None:
    files = {Path(p).name: _ini(t) for p, t in render_host(_spec("bond"), "networkd").items()}
    assert files["50-kvmnet-bond0.netdev"]["Bond"]["Mode"] == "active-backup"
    assert files["50-kvmnet-bond0.netdev"]["Bond"]["MIIMonitorSec"] == "100ms"
    eno1 = files["50-kvmnet-eno1.network"]["Network"]
    assert (eno1["Bond"], eno1["PrimarySlave"]) == ("bond0", "yes")
    assert files["50-kvmnet-eno1.network"]["Link"]["MTUBytes"] == "9000"
    bond0 = files["50-kvmnet-bond0.network"]["Network"]
    assert (bond0["Bridge"], bond0["VLAN"]) == ("br0", "bond0.100")
    assert files["50-kvmnet-bond0.100.netdev"]["VLAN"]["Id"] == "100"
    assert files["50-kvmnet-bond0.100.network"]["Network"]["Bridge"] == "br100"
    assert files["50-kvmnet-bond1.network"]["Network"]["VLAN"] == "vlan200"
    assert "Bridge" not in files["50-kvmnet-bond1.network"]["Network"]


def test_networkd_nic_that_only_carries_vlans_says_so() -> None:
    spec, _ = load_text("host: {vlans: {eno1.7: {link: eno1, id: 7}}, "
                        "bridges: {br7: {ports: [eno1.7]}}}")
    text = render_host(spec, "networkd")["etc/systemd/network/50-kvmnet-eno1.network"]
    assert "VLAN=eno1.7" in text and "# eno1 carries VLANs of the spec" in text


# --- the second wall ---------------------------------------------------------------

HOSTILE = [
    Host.model_construct(bonds={"bond0": HostBond.model_construct(
        ports=["eno1"], mode="active-backup; reboot", miimon=100, lacp_rate=None,
        xmit_hash_policy=None, primary=None)}),
    Host.model_construct(bonds={"bond0": HostBond.model_construct(
        ports=["eno1 $(reboot)"], mode="active-backup", miimon=100, lacp_rate=None,
        xmit_hash_policy=None, primary=None)}),
    Host.model_construct(vlans={"v1": HostVlan.model_construct(link="eno1", id="7 || x")}),
    Host.model_construct(vlans={"v1": HostVlan.model_construct(link="eno1", id=5000)}),
    Host.model_construct(bonds={"bond0": HostBond.model_construct(
        ports=["eno1"], mode="active-backup", miimon="100\nup reboot", lacp_rate=None,
        xmit_hash_policy=None, primary=None)}),
    Host.model_construct(bridges={"br0": HostBridge.model_construct(
        ports=["bond0>x"], stp=False, forward_delay=None, address=[], gateway=None,
        metric=None, dhcp=False, mtu=None, dns=[], check=None, mac=None)}),
]


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
@pytest.mark.parametrize("host", HOSTILE, ids=range(len(HOSTILE)))
def test_renderers_refuse_values_that_skipped_validation(renderer: str, host: Host) -> None:
    full = {"renderer": "auto", "bridges": {}, "bonds": {}, "vlans": {},
            "resolve_guests": False, **{k: getattr(host, k) for k in host.model_fields_set}}
    spec = Spec.model_construct(host=Host.model_construct(**full))
    with pytest.raises(RenderError, match="not writing"):
        render_host(spec, renderer)


# --- the checks ----------------------------------------------------------------------

def _problems(text: str) -> list[str]:
    """Every error, as LINE:COL: message (through check_file: type errors too)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "spec.yaml"
        path.write_text(text)
        _, _, found = check_file(path)
    return [f"{p.line}:{p.col}: {p.message}" for p in errors(found)]


def test_a_bond_port_in_a_bridge_or_another_bond_is_refused_where_it_is() -> None:
    got = _problems("""\
host:
  bonds:
    bond0: {ports: [eno1, eno2]}
    bond1: {ports: [eno2, eno3], mode: balance-xor}
  bridges:
    br0: {ports: [bond0, eno3]}
    br1: {ports: [bond1]}
""")
    assert any(g.startswith("4:21:") and "eno2 is already a port of bond bond0" in g
               for g in got), got
    assert any(g.startswith("4:27:") and "eno3 is also a port of bridge br0" in g
               and "host.bridges.br0.ports: [bond1]" in g for g in got), got


def test_bond_options_belong_to_their_modes() -> None:
    got = _problems("""\
host:
  bonds:
    bond0: {ports: [eno1], mode: balance-xor, lacp_rate: fast, primary: eno1}
    bond1: {ports: [eno2], xmit_hash_policy: layer3+4, primary: eno9}
  bridges:
    br0: {ports: [bond0, bond1]}
""")
    text = "\n".join(got)
    assert "lacp_rate is for mode 802.3ad" in text
    assert "primary is for mode active-backup, and bond0 is balance-xor" in text
    assert "xmit_hash_policy is for modes 802.3ad and balance-xor" in text
    assert "primary eno9 is not one of bond1's ports (eno2)" in text


def test_vlans_are_checked() -> None:
    got = "\n".join(_problems("""\
host:
  bonds:
    bond0: {ports: [eno1]}
  vlans:
    bond0.100: {link: bond0, id: 100}
    also100: {link: bond0, id: 100}
    eno1.5: {link: eno1, id: 5}
    br0.7: {link: br0, id: 7}
    lonely: {link: eno4, id: 9}
  bridges:
    br0: {ports: [bond0]}
    br100: {ports: [bond0.100, also100, eno1.5, br0.7]}
"""))
    assert "VLAN 100 on bond0 is already bond0.100" in got
    assert "eno1 is a port of bond bond0, which takes all its frames: make the VLAN on " \
        "the bond (link: bond0)" in got
    assert "br0 is a bridge: make the VLAN on the bridge's uplink (a NIC or bond: link: " \
        "bond0)" in got
    assert "VLAN lonely is in no bridge" in got


def test_vlan_id_range_and_unused_bond() -> None:
    got = "\n".join(_problems("""\
host:
  bonds:
    bond9: {ports: [eno7]}
  vlans:
    eno1.0: {link: eno1, id: 0}
  bridges:
    br0: {ports: [eno1]}
"""))
    assert "greater than or equal to 1" in got
    assert "bond bond9 is in no bridge and carries no VLAN" in got


def test_the_bond_example_is_valid_and_counts_its_bonds() -> None:
    spec, pos = load(DATA / "bond.in.yaml")
    assert errors(check(spec, pos)) == []
    assert list(spec.host.bonds) == ["bond0", "bond1"]
    assert spec.host.vlans["bond0.100"] == HostVlan(link="bond0", id=100)


# --- VLAN-aware bridges (vlan_filtering, pvid, vlans) in each format ------------------

def test_netplan_vlan_filtering_dropins_match_the_units_netplan_makes(
        tmp_path: Path) -> None:
    spec = _spec("trunk")
    units = _netplan(tmp_path, spec)
    dropins = [p for p in render_host(spec, "netplan") if ".d/" in p]
    assert sorted(Path(p).parent.name[: -len(".d")] for p in dropins) == [
        "10-netplan-bond0.network", "10-netplan-br0.netdev"]
    for p in dropins:  # each extends a unit netplan generate really writes
        assert Path(p).parent.name[: -len(".d")] in units
    br = _ini((tmp_path / [p for p in dropins if "br0" in p][0]).read_text())
    assert dict(br["Bridge"]) == {"VLANFiltering": "yes", "DefaultPVID": "1"}
    port = (tmp_path / [p for p in dropins if "bond0" in p][0]).read_text()
    assert "[BridgeVLAN]\nPVID=1\nEgressUntagged=1\n" in port
    assert "[BridgeVLAN]\nVLAN=100\n" in port and "[BridgeVLAN]\nVLAN=200\n" in port


def test_libnm_reads_vlan_filtering(tmp_path: Path) -> None:
    p = _nm(tmp_path, _spec("trunk"))
    assert p["kvmnet-br0"]["filtering"] == [True, 1]
    assert p["kvmnet-bond0"]["port_vlans"] == ["100", "200"]
    assert p["kvmnet-bond0"]["controller"] == "br0"


def test_ifquery_reads_vlan_filtering(tmp_path: Path) -> None:
    text = _ifquery(tmp_path, _spec("trunk"), "br0")
    assert "bridge_vlan_aware: yes" in text.splitlines()
    # (ifquery says up: for post-up:, its synonym)
    assert "up: ip link set dev $IFACE type bridge vlan_default_pvid 1" in text
    assert "up: bridge vlan add vid 100 dev bond0" in text
    assert "up: bridge vlan add vid 200 dev bond0" in text


def test_networkd_vlan_filtering() -> None:
    files = render_host(_spec("trunk"), "networkd")
    netdev = _ini(files["etc/systemd/network/50-kvmnet-br0.netdev"])
    assert (netdev["Bridge"]["VLANFiltering"], netdev["Bridge"]["DefaultPVID"]) == ("yes", "1")
    port = files["etc/systemd/network/50-kvmnet-bond0.network"]
    assert "[BridgeVLAN]\nPVID=1\nEgressUntagged=1\n" in port
    assert port.count("[BridgeVLAN]\nVLAN=") == 2


def test_no_vlan_keys_without_vlan_filtering() -> None:
    for renderer in RENDERERS:
        for text in render_host(_spec("bond"), renderer).values():
            assert "vlan_aware" not in text and "VLANFiltering" not in text
            assert "vlan-filtering" not in text


@pytest.mark.parametrize("renderer", sorted(RENDERERS))
def test_renderers_refuse_a_vlan_id_that_skipped_validation(renderer: str) -> None:
    spec = _spec("trunk")
    hb = spec.host.bridges["br0"].model_copy(update={"vlans": [100, "200; reboot"]})
    bad = spec.model_copy(update={"host": spec.host.model_copy(
        update={"bridges": {"br0": hb}})})
    with pytest.raises(RenderError, match="not writing"):
        render_host(bad, renderer)
