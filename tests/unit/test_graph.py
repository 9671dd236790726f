"""The topology picture: golden DOT and Mermaid per case, the live host as facts, the
CLI's formats, and a 50-network spec that Graphviz really draws (and a person looked at:
docs/graph-seed.png, docs/graph-50.png, rewritten with KVMNET_REGEN_GOLDEN=1)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from kvmnet.cli.main import main
from kvmnet.model.live import HostLink, HostRoute, HostState
from kvmnet.model.spec import Spec
from kvmnet.render.graph import (
    Edge,
    Facts,
    Graph,
    Node,
    build_graph,
    default_route,
    live_host_bridges,
)
from kvmnet.render.graph_text import to_dot, to_mermaid
from kvmnet.spec.check import check, errors
from kvmnet.spec.load import load

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "graph"
DOCS = ROOT / "docs"
CASES = sorted(p.name[: -len(".in.yaml")] for p in DATA.glob("*.in.yaml"))
REGEN = os.environ.get("KVMNET_REGEN_GOLDEN") == "1"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz (dot) missing")


def golden(path: Path, text: str) -> None:
    if REGEN:
        path.write_text(text)
    assert path.exists(), f"{path} missing (KVMNET_REGEN_GOLDEN=1 writes it)"
    assert text == path.read_text(), f"{path} differs (KVMNET_REGEN_GOLDEN=1 rewrites)"


def case_graph(case: str):
    spec, pos = load(DATA / f"{case}.in.yaml")
    assert errors(check(spec, pos)) == []
    return build_graph(spec, title=f"{case}.in.yaml")


def test_cases_present() -> None:
    assert {"seed", "variety"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_golden_dot(case: str) -> None:
    golden(DATA / f"{case}.out.dot", to_dot(case_graph(case)))


@pytest.mark.parametrize("case", CASES)
def test_golden_mermaid(case: str) -> None:
    golden(DATA / f"{case}.out.mmd", to_mermaid(case_graph(case)))


def test_seed_shows_everything_the_issue_asks_for() -> None:
    dot = to_dot(case_graph("seed"))
    for text in (
        "enp2s0", "br0", "192.168.1.1/24",                       # host NIC, bridge + address
        "default", "nat · virbr0", "192.168.122.1/24", "DHCP 192.168.122.2–.254",
        "mynet1", "route · br1", "203.0.113.89/29",
        "lan", "bridge · br0",
        "web1", "52:54:00:c5:97:8b", "192.168.122.10",           # guest NIC: MAC, address
        "tcp :2222 → web1:22",                                   # forward
        "LAN router", "192.168.1.254",                           # the uplink
        "203.0.113.88/29 via 192.168.1.1 (mynet1)",              # the route the router needs
    ):
        assert text in dot, text
    # the forward reaches the guest's NIC on the NAT network
    assert '"fwd/default/0" -> "guest/web1":n0:w' in dot


def test_dot_text_is_escaped() -> None:
    spec = Spec.model_validate({"networks": {"a.b-c": {"mode": "isolated", "bridge": "vb0",
                                                       "ipv4": {"address": "10.0.0.1/24"}}},
                                "guests": {"x-1.y": {"interfaces": [{"network": "a.b-c"}]}}})
    g = build_graph(spec, title='say "hi" <b>')
    dot, mmd = to_dot(g), to_mermaid(g)
    assert 'label="say \\"hi\\" <b>"' in dot
    ids = re.findall(r"^\s+(\S+?)[\[>(]", mmd, re.M)
    assert ids and all(re.fullmatch(r"[A-Za-z0-9_]+", i) for i in ids), ids
    assert "title: say #quot;hi#quot; #lt;b#gt;" in mmd


# Names as the live host may have them (graph -c URI reads names kvmnet never checked):
# DOT's quotes, backslashes, HTML, statements, keywords, ports.
HOSTILE_NAMES = ['a"b', "back\\", "<b>bold</b>", 'x]; "pwned" -> "evil"; y[', "c{d}e",
                 "\\N \\G", "fe80::1", "node", "edge", "q\\\"r"]


def hostile_graph() -> Graph:
    nodes: list[Node] = []
    edges: list[Edge] = []
    for i, name in enumerate(HOSTILE_NAMES):
        nodes += [Node(f"nic:{name}", "nic", name, (name,)),
                  Node(f"net:{name}", "network", name, (name,), cluster="net-nat", sub="nat"),
                  Node(f"guest:{name}", "guest", name, cluster="guests", rows=(("n0", name),))]
        edges += [Edge(f"nic:{name}", f"net:{name}", label=name),
                  Edge(f"net:{name}", f"guest:{name}", dst_port="n0", style="dashed")]
        if i:
            edges.append(Edge(f"nic:{HOSTILE_NAMES[i - 1]}", f"nic:{name}"))
    return Graph(title=HOSTILE_NAMES[1] + HOSTILE_NAMES[3], nodes=tuple(nodes),
                 edges=tuple(edges))


@needs_dot
def test_hostile_names_stay_names_in_dot() -> None:
    """graphviz quotes them: dot reads exactly our nodes and edges (none injected, none
    split at ':'), and draws every name as text."""
    g = hostile_graph()
    dot = to_dot(g)
    r = subprocess.run(["dot", "-Tjson"], input=dot.encode(), capture_output=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and not r.stderr, r.stderr
    drawn = json.loads(r.stdout)
    names = [o["name"] for o in drawn["objects"] if "nodes" not in o and "subgraphs" not in o]
    # our ids, ':' written '/', backslashes doubled by graphviz.escape (DOT keeps them)
    want = [n.id.replace(":", "/").replace("\\", "\\\\") for n in g.nodes]
    assert sorted(names) == sorted(want)
    assert len(drawn["edges"]) == len(g.edges)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True,
                         timeout=60, check=True).stdout.decode()
    texts = {html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)}
    for name in HOSTILE_NAMES:
        assert name in texts, (name, sorted(texts))


def test_hostile_names_in_mermaid_are_plain_ids() -> None:
    ids = re.findall(r"^\s+(\S+?)[\[>(]", to_mermaid(hostile_graph()), re.M)
    assert ids and all(re.fullmatch(r"[A-Za-z0-9_]+", i) for i in ids), ids


def test_live_host_as_facts() -> None:
    links = {
        "eth0": HostLink("eth0", 2, "", "br0", True, mtu=1500),
        "br0": HostLink("br0", 3, "bridge", None, True, mtu=1500,
                        addresses=("192.168.7.2/24", "fe80::1/64")),
        "vnet0": HostLink("vnet0", 4, "tun", "br0", True),
        "virbr0": HostLink("virbr0", 5, "bridge", None, True, addresses=("192.168.122.1/24",)),
    }
    host = HostState(links, (HostRoute("0.0.0.0/0", "br0", "192.168.7.1"),
                             HostRoute("192.168.7.0/24", "br0")))
    assert default_route(host) == ("br0", "192.168.7.1")
    bridges = live_host_bridges(host, skip={"virbr0"})
    assert list(bridges) == ["br0"]
    assert bridges["br0"].ports == ["eth0"]          # the guest's tap is not a host NIC
    assert [str(a) for a in bridges["br0"].address] == ["192.168.7.2/24"]
    assert str(bridges["br0"].gateway) == "192.168.7.1"
    spec = Spec.model_validate({
        "host": {"bridges": {n: b.model_dump() for n, b in bridges.items()}},
        "networks": {"default": {"mode": "nat", "bridge": "virbr0",
                                 "ipv4": {"address": "192.168.122.1/24"}}},
        "guests": {"g": {"interfaces": [{"network": "default", "mac": "52:54:00:00:00:09"},
                                        {"bridge": "br0", "mac": "52:54:00:00:00:0a"}]}}})
    facts = Facts(addresses={"52:54:00:00:00:09": [("192.168.122.50", "dhcp-lease")],
                             "52:54:00:00:00:0a": [("192.168.7.40", "neighbour"),
                                                   ("192.168.7.40", "agent")]},
                  default_dev="br0", default_gw="192.168.7.1")
    dot = to_dot(build_graph(spec, facts))
    assert "192.168.122.50 (dhcp-lease)" in dot
    assert "192.168.7.40 (neighbour) · 192.168.7.40 (agent)" in dot
    assert '"router/192.168.7.1" -> "nic/eth0"' in dot
    assert '"br/br0" -> "net/default" [label=NAT]' in dot


def test_live_route_via_the_uplink_nic() -> None:
    """Live, the default route may leave by a plain NIC: the routed network's upstream
    route then goes via that NIC's address, not a bridge's."""
    spec = Spec.model_validate({
        "host": {"bridges": {"br9": {"address": "10.231.0.1/24"}}},
        "networks": {"rt": {"mode": "route", "bridge": "virbr-rt",
                            "ipv4": {"address": "203.0.113.89/29"}}}})
    facts = Facts(default_dev="up0", default_gw="198.51.100.254",
                  default_addresses=("fe80::1/64", "198.51.100.2/24"))
    dot = to_dot(build_graph(spec, facts))
    assert "203.0.113.88/29 via 198.51.100.2 (rt)" in dot
    assert '"note/routes/0" -> "router/198.51.100.254"' in dot
    assert '"nic/up0" -> "net/rt" [label=routed]' in dot


def spec50(n: int = 50) -> Spec:
    """n networks of every mode, ~1.3 guests each, forwards on the NAT ones."""
    modes = ["nat", "nat", "route", "isolated", "nat", "open", "bridge", "macvtap"]
    host = {"bridges": {
        "br0": {"ports": ["enp1s0"], "address": "192.168.1.2/24", "gateway": "192.168.1.1"},
        "br1": {"ports": ["enp2s0", "enp3s0"]},
        "brstor": {"ports": ["enp4s0"], "mtu": 9000, "address": "10.50.0.2/24"}}}
    nets: dict[str, dict] = {}
    for i in range(n):
        mode = modes[i % len(modes)]
        net: dict = {"mode": mode}
        if mode == "bridge":
            net["bridge"] = ["br1", "brstor"][i // 8 % 2]
        elif mode == "macvtap":
            net.update(devices=["enp5s0"], macvtap_mode="bridge")
        else:
            net["bridge"] = f"virbr{i}"
            net["ipv4"] = {"address": f"10.{100 + i}.0.1/24"}
            if mode != "open":
                net["ipv4"]["dhcp"] = f"10.{100 + i}.0.100-10.{100 + i}.0.200"
        nets[f"net{i:02d}"] = net
    guests: dict[str, dict] = {}
    for i in range(n):
        name = f"net{i:02d}"
        for k in range(1 + (i % 3 == 0)):
            gname = f"vm{len(guests):03d}"
            nics: list[dict] = [{"network": name}]
            if nets[name]["mode"] == "nat" and k == 0:
                nics[0]["ipv4"] = f"10.{100 + i}.0.10"
                nets[name].setdefault("forwards", []).append(
                    {"proto": "tcp", "host_port": 2200 + i, "guest": gname, "guest_port": 22})
            if len(guests) % 7 == 0:
                nics.append({"network": f"net{(i + 1) % n:02d}"})
            guests[gname] = {"interfaces": nics}
    return Spec.model_validate({"host": host, "networks": nets, "guests": guests})


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_fifty_networks_are_compact() -> None:
    spec = spec50()
    assert errors(check(spec)) == []
    g = build_graph(spec, title="50 networks")
    nets = [n for n in g.nodes if n.kind == "network"]
    assert len(nets) == 50
    assert all(len(n.lines) <= 1 for n in nets)               # one line under the name
    assert not [n for n in g.nodes if n.kind == "forward"]    # forwards sit on guest rows
    assert not [e for e in g.edges if e.label]                 # clusters say the mode
    assert {n.cluster for n in nets} == {"net-nat", "net-route", "net-isolated", "net-open",
                                         "net-bridge", "net-macvtap"}
    assert "⇐ tcp :2200 → :22" in to_dot(g)


@needs_dot
@pytest.mark.parametrize("case", ["seed", "50"])
def test_png_renders(case: str, tmp_path: Path) -> None:
    if case == "seed":
        spec, _ = load(DATA / "seed.in.yaml")
        g = build_graph(spec, title="examples/seed.yaml")
    else:
        g = build_graph(spec50(), title="50 networks (generated: tests/unit/test_graph.py)")
    png = tmp_path / f"graph-{case}.png"
    subprocess.run(["dot", "-Tpng", "-o", str(png)], input=to_dot(g).encode(), check=True,
                   capture_output=True, timeout=120)
    w, h = png_size(png)
    if case == "seed":
        assert 800 <= w <= 2500 and 250 <= h <= 1200, (w, h)
    else:  # tall (LR, one column per stage) but not absurd, and every label drawn
        assert 900 <= w <= 3000 and 1500 <= h <= 6000, (w, h)
        assert png.stat().st_size > 100_000
    if REGEN:
        DOCS.mkdir(exist_ok=True)
        shutil.copy(png, DOCS / png.name)


# -- CLI ----------------------------------------------------------------------------

def test_cli_text_formats(tmp_path: Path, capsys) -> None:
    seed = str(DATA / "seed.in.yaml")
    assert main(["graph", seed, "-o", str(tmp_path / "t.dot")]) == 0
    assert (tmp_path / "t.dot").read_text().startswith("digraph kvmnet {")
    assert main(["graph", seed, "-o", str(tmp_path / "t.mmd")]) == 0
    assert "flowchart LR" in (tmp_path / "t.mmd").read_text()


@needs_dot
@pytest.mark.parametrize("ext", ["svg", "png"])
def test_cli_graphviz_formats(tmp_path: Path, ext: str) -> None:
    out = tmp_path / "sub" / f"t.{ext}"
    assert main(["graph", str(DATA / "seed.in.yaml"), "-o", str(out)]) == 0
    if ext == "png":
        png_size(out)
    else:
        assert "<svg" in out.read_text() and "web1" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp file left


def test_cli_without_graphviz(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no `dot` to be found
    assert main(["graph", str(DATA / "seed.in.yaml"), "-o", str(tmp_path / "t.png")]) == 1
    msg = capsys.readouterr().err
    assert "graphviz is not installed" in msg and "apt-get install graphviz" in msg
    assert "Traceback" not in msg and not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("args, says", [
    (["-o", "x.png"], "either FILE or -c URI"),
    (["SEED", "-c", "test:///default", "-o", "x.png"], "either FILE or -c URI"),
    (["SEED", "-o", "x.jpeg"], "unknown extension .jpeg"),
])
def test_cli_usage_errors(args: list[str], says: str, tmp_path: Path, capsys) -> None:
    args = [str(DATA / "seed.in.yaml") if a == "SEED" else a for a in args]
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    assert main(["graph", *args]) == 1
    assert says in capsys.readouterr().err


def test_cli_from_live_test_driver(tmp_path: Path) -> None:
    """-c URI: the live state as a Spec (kvmnet import) is drawn."""
    out = tmp_path / "live.dot"
    assert main(["graph", "-c", "test:///default", "-o", str(out)]) == 0
    dot = out.read_text()
    assert '"net/default"' in dot and "test:///default" in dot
