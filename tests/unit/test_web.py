"""kvmnet serve's app without a browser (Starlette's test client) against libvirt's
in-process test driver: every view answers with the safety headers and no inline
script; /api/ is the CLI's --json; the token and the loopback Host check refuse what
they must; whatever the host says is escaped. The browser and the real libvirtd:
tests/e2e/test_web_lab.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kvmnet.cli.main import main
from kvmnet.errors import KvmnetError
from kvmnet.render.graph import Edge, Graph, Node
from kvmnet.service.look import HostLook, Look, Source
from kvmnet.web import require
from kvmnet.web.app import VIEWS, Config, guarded
from kvmnet.web.guard import check_listen, parse_listen

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"
LOCAL = "http://127.0.0.1"
TOKEN = "s3cret-token-for-tests"
ABSENT = "/run/libvirt/virtqemud-sock-ro"


def client(source: Source, **kw: object) -> TestClient:
    config = Config(source, **kw)  # type: ignore[arg-type]
    return TestClient(guarded(config), base_url=LOCAL, follow_redirects=False)


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    main(list(args))
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def plain() -> TestClient:
    return client(Source("test:///default"))


@pytest.fixture
def with_spec() -> TestClient:
    return client(Source("test:///default", SEED))


def test_every_view_has_the_safety_headers_and_no_inline_script(with_spec):
    for view in VIEWS:
        r = with_spec.get(f"/{view}")
        assert r.status_code == 200, (view, r.text[:500])
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        scripts = re.findall(r"<script[^>]*>", r.text)
        assert scripts == ['<script type="module" src="/static/app.js">'], scripts
        assert not re.search(r"\son[a-z]+=", r.text), view      # no event handler attributes
        assert " style=" not in r.text, view                   # CSP forbids inline styles
        assert not re.search(r"(src|href)=\"(https?:)?//", r.text), view   # nothing outside


def test_assets_are_the_package_s_own_files(plain):
    for path in ("/static/app.js", "/static/style.css"):
        r = plain.get(path)
        assert r.status_code == 200 and r.headers["x-content-type-options"] == "nosniff"
        assert not re.search(r"https?://", r.text), path    # no CDN, no outside fetch


def test_api_is_the_cli_json(plain, with_spec, capsys):
    assert plain.get("/api/show").json() == cli_json(capsys, "show", "-c", "test:///default",
                                                     "--json")
    assert plain.get("/api/leases").json() == cli_json(capsys, "leases", "-c",
                                                       "test:///default", "--json")
    page_plan = with_spec.get("/api/plan").json()
    cli_plan = cli_json(capsys, "plan", str(SEED), "-c", "test:///default", "--json")
    assert page_plan == cli_plan and page_plan["changes"]
    capsys.readouterr()
    main(["doctor", "-c", "test:///default", "--json"])   # (exit 1 when a check fails)
    assert plain.get("/api/doctor").json() == json.loads(capsys.readouterr().out)


def test_plan_view_shows_each_action_marker_and_diff(with_spec):
    plan = with_spec.get("/api/plan").json()
    html = with_spec.get("/plan").text
    items = re.findall(r'data-kind="([^"]+)" data-target="([^"]+)" data-impact="([^"]+)"', html)
    assert items == [(a["kind"], a["target"], a["impact"]) for a in plan["actions"]]
    for a in plan["actions"]:
        marker = f"skipped: {a['skipped']}" if a.get("skipped") else a["impact"]
        assert f"[{marker}]" in html
        for d in a["details"]:
            assert f">{d.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}<" \
                in html.replace("&#34;", '"').replace("&#39;", "'")


def test_without_a_spec_the_plan_view_says_how(plain):
    assert "--spec FILE" in plain.get("/plan").text
    assert plain.get("/api/plan").status_code == 503


def test_nothing_writes(plain):
    for path in ("/", "/networks", "/api/show", "/api/version"):
        assert plain.post(path).status_code == 405, path
        assert plain.delete(path).status_code == 405, path


def test_loopback_answers_only_to_loopback_names(plain):
    assert plain.get("/api/version").status_code == 200
    assert plain.get("/api/version", headers={"host": "localhost:8470"}).status_code == 200
    assert plain.get("/api/version", headers={"host": "[::1]:8470"}).status_code == 200
    r = plain.get("/api/version", headers={"host": "rebound.example:8470"})
    assert r.status_code == 421 and r.headers["x-frame-options"] == "DENY"


def test_a_token_guards_every_path_elsewhere():
    c = client(Source("test:///default"), token=TOKEN, loopback=False)
    for path in ("/", "/topology", "/api/show", "/static/app.js", "/fragment/networks"):
        r = c.get(path)
        assert r.status_code == 401, path
        assert "token" in r.text and "networks" not in r.text
    assert c.get("/api/show", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/show?token=wrong").status_code == 401
    assert c.get("/api/show", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    first = c.get(f"/networks?token={TOKEN}&host=x")
    assert first.status_code == 303 and first.headers["location"] == "/networks?host=x"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert c.get("/networks").status_code == 200     # the cookie the redirect set


def test_tls_marks_the_cookie_secure():
    c = client(Source("test:///default"), token=TOKEN, loopback=False, tls=True)
    assert "Secure" in c.get(f"/?token={TOKEN}").headers["set-cookie"]


def test_listen_rules():
    assert parse_listen("127.0.0.1:8470").loopback
    assert parse_listen("[::1]:0").loopback and parse_listen(":9000").host == "127.0.0.1"
    assert not parse_listen("0.0.0.0:8470").loopback
    for bad in ("8470", "localhost", "example.com:80", "1.2.3.4:99999"):
        with pytest.raises(KvmnetError, match="--listen"):
            parse_listen(bad)
    check_listen(parse_listen("127.0.0.1:1"), tls=False, insecure_http=False)
    check_listen(parse_listen("10.0.0.1:1"), tls=True, insecure_http=False)
    check_listen(parse_listen("10.0.0.1:1"), tls=False, insecure_http=True)
    with pytest.raises(KvmnetError, match="without TLS.*--insecure-http"):
        check_listen(parse_listen("10.0.0.1:1"), tls=False, insecure_http=False)


def test_serve_refuses_plain_http_elsewhere_before_binding(capsys):
    assert main(["serve", "-c", "test:///default", "--listen", "10.157.0.1:0"]) == 1
    assert "refusing to serve 10.157.0.1 without TLS" in capsys.readouterr().err


def test_missing_web_extra_is_a_clear_message(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(KvmnetError, match=r"pip install 'kvmnet\[web\]'"):
        require()


HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def hostile_look(_: Source) -> Look:
    """A host whose every string is markup (names, a lease's host name, a doctor fix)."""
    net = {"name": HOSTILE, "mode": "nat", "bridge": HOSTILE, "subnets": [HOSTILE],
           "active": True, "autostart": True, "owner": "kvmnet"}
    nic = {"guest": HOSTILE, "running": True, "mac": HOSTILE, "type": "network",
           "source": HOSTILE, "model": HOSTILE, "ip": HOSTILE,
           "addresses": [{"ip": HOSTILE, "source": "dhcp-lease", "sources": [HOSTILE]}]}
    lease = {"network": HOSTILE, "mac": HOSTILE, "ip": HOSTILE, "prefix": 24,
             "hostname": HOSTILE, "guest": HOSTILE, "expiry": 4102444800,
             "source": "dhcp-lease", "sources": [HOSTILE]}
    check = {"id": "x", "status": "fail", "title": HOSTILE, "message": HOSTILE, "fix": HOSTILE}
    action = {"kind": "network.create", "target": HOSTILE, "impact": "restart",
              "summary": HOSTILE, "details": [HOSTILE]}
    graph = Graph(HOSTILE, (Node(f"net:{HOSTILE}", "network", HOSTILE, (HOSTILE,),
                                 "net-nat", "nat"),
                            Node(f"guest:{HOSTILE}", "guest", HOSTILE, cluster="guests",
                                 rows=(("n0", f"nic0 {HOSTILE}"),))),
                  (Edge(f"net:{HOSTILE}", f"guest:{HOSTILE}", dst_port="n0"),))
    h = HostLook("", HOSTILE, show={"kvmnet": 1, "uri": HOSTILE, "networks": [net],
                                    "interfaces": [nic], "forwards": []},
                 leases={"kvmnet": 1, "uri": HOSTILE, "leases": [lease]},
                 doctor={"kvmnet": 1, "uri": HOSTILE, "ok": False, "checks": [check]},
                 plan={"kvmnet": 1, "uri": HOSTILE, "file": HOSTILE, "changes": True,
                       "actions": [action], "warnings": []},
                 details={HOSTILE: {"dhcp": [HOSTILE], "reservations": [], "domain": HOSTILE,
                                    "dns_hosts": [{"ip": HOSTILE, "names": [HOSTILE]}]}},
                 graph=graph, drift=frozenset({f"net:{HOSTILE}"}))
    return Look((h,), HOSTILE)


def test_everything_from_the_host_is_escaped():
    c = TestClient(guarded(Config(Source()), hostile_look), base_url=LOCAL)
    for view in VIEWS:
        html = c.get(f"/{view}").text
        assert "&lt;script&gt;alert(1)" in html, view
        assert "<script>alert" not in html and "<img" not in html, view
        assert "onerror=alert(2)" not in html.replace("&#34;&gt;&lt;img src=x onerror=", ""), view


def test_hosts_spec_gets_a_summary_and_a_view_per_host(tmp_path):
    """hv2's daemon is not there (modular virtqemud's socket, on a machine running the
    monolithic libvirtd or none): it is shown failed, hv1 as usual."""
    if Path(ABSENT).exists():
        pytest.skip(f"{ABSENT} exists here: the test needs a libvirt socket nobody serves")
    spec = tmp_path / "hosts.yaml"
    spec.write_text("hosts:\n  hv1: {uri: 'test:///default'}\n"
                    f"  hv2: {{uri: 'qemu+unix:///system?socket={ABSENT}'}}\n"
                    "networks:\n  kvt-wb-n1:\n    mode: isolated\n    bridge: kvtwb-n1\n"
                    "    hosts: [hv1]\n")
    c = client(Source(None, spec))
    assert c.get("/").headers["location"] == "/summary"
    summary = c.get("/summary").text
    assert 'href="/topology?host=hv1"' in summary and 'href="/topology?host=hv2"' in summary
    assert re.search(r'class="status-changed">changed<', summary)
    assert re.search(r'class="status-failed">failed<', summary)
    plan = c.get("/api/plan").json()
    assert set(plan["hosts"]) == {"hv1", "hv2"}
    assert [a["target"] for a in plan["hosts"]["hv1"]["actions"]] == ["network/kvt-wb-n1"]
    assert plan["hosts"]["hv2"]["status"] == "failed" and plan["summary"]["failed"] == ["hv2"]
    assert "network/kvt-wb-n1" in c.get("/plan?host=hv1").text
    assert "cannot be read" in c.get("/networks?host=hv2").text
    assert c.get("/api/show?host=hv1").json()["uri"] == "test:///default"
    assert c.get("/api/show?host=hv2").status_code == 503


def test_a_spec_error_is_shown_not_raised(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("networks:\n  n1:\n    mode: nat\n    ipv4: {address: 10.157.0.1/33}\n")
    c = client(Source("test:///default", spec))
    page = c.get("/networks")
    assert page.status_code == 200 and f"{spec}:4:" in page.text
    assert c.get("/api/show").status_code == 422


def test_version_follows_the_look():
    looks = iter([Look((), "a"), Look((), "b", problems=("x",))])
    c = TestClient(guarded(Config(Source(), refresh=0.5), lambda _: next(looks)),
                   base_url=LOCAL)
    first = c.get("/api/version").json()["version"]
    import time

    time.sleep(0.6)
    assert c.get("/api/version").json()["version"] != first


def test_topology_colours_live_state_and_drift():
    from kvmnet.model.spec import Spec
    from kvmnet.render.graph import build_graph
    from kvmnet.web.svg import State, layout

    spec = Spec.model_validate({
        "networks": {"n1": {"mode": "nat", "bridge": "kvtwb-n1",
                            "ipv4": {"address": "10.157.5.1/24"}},
                     "n2": {"mode": "isolated", "bridge": "kvtwb-n2"}},
        "guests": {"g1": {"interfaces": [{"network": "n1", "mac": "52:54:00:00:00:01"},
                                         {"network": "n2", "mac": "52:54:00:00:00:02"}]},
                   "g2": {"interfaces": [{"network": "n2", "mac": "52:54:00:00:00:03"}]}}})
    pic = layout(build_graph(spec), State({"n1": True, "n2": False}, {"g1": True, "g2": False},
                                          frozenset({"net:n2", "52:54:00:00:00:02"})))
    box = {b.id: b for b in pic.boxes}
    assert "active" in box["net:n1"].cls.split() and "drift" not in box["net:n1"].cls
    assert {"inactive", "drift"} <= set(box["net:n2"].cls.split())
    assert "running" in box["guest:g1"].cls.split()
    assert "stopped" in box["guest:g2"].cls.split()
    rows = [t for t in box["guest:g1"].texts if t.cls.startswith("row")]
    assert [t.cls for t in rows] == ["row", "row drift"]
    # each NIC's edge ends at its own row of the guest
    g1 = box["guest:g1"]
    ends = sorted(float(c.d.rsplit(",", 1)[1]) for c in pic.curves
                  if c.d.split()[-1].startswith(f"{g1.x:.0f},"))
    mine = [y for y in ends if g1.y <= y <= g1.y + g1.h]
    assert len(mine) == 2 and mine[0] < mine[1], (ends, g1)
    assert all(b.x + b.w <= pic.width for b in pic.boxes)


def test_guest_nic_vlans_are_read_from_the_domain_xml():
    from kvmnet.model.live import LiveDomain, LiveState
    from kvmnet.parse.domain import parse_nics
    from kvmnet.service.views import nic_vlans

    nics = parse_nics(
        "<domain><devices>"
        "<interface type='bridge'><mac address='52:54:00:AA:00:01'/><source bridge='br0'/>"
        "<vlan trunk='yes'><tag id='42'/><tag id='43' nativeMode='untagged'/></vlan>"
        "</interface>"
        "<interface type='network'><mac address='52:54:00:aa:00:02'/>"
        "<source network='n1'/></interface></devices></domain>")
    from kvmnet.model.vlan import Vlans

    assert [n.vlans for n in nics] == [Vlans((42,), 43), None]
    live = LiveState("test:///default", {}, {"g": LiveDomain("g", True, nics)})
    assert nic_vlans(live) == {"52:54:00:aa:00:01": ["trunk 42,43 native 43"]}
