"""kvmnet serve in a real browser (Playwright driving Debian's chromium) against the lab's
real libvirtd (tests/lab), with a real guest (tests/lab/guest.py):

1. the page shows the networks and the guest's NIC of a spec `kvmnet apply` made there,
   and its plan view says there is nothing to do;
2. the guest boots and takes a DHCP lease: the open leases page shows it by itself;
3. a change made with `virsh net-update` shows as drift on the open page within seconds,
   and the plan view lists the change;
4. the plan view of a changed spec shows the actions, markers and diff lines of
   `kvmnet plan --json` for the same spec;
5. listening on another address (in a namespace of the test's own), every request
   without the token is refused, with it answered (over plain HTTP, which needs
   --insecure-http there, and over TLS);
6. a spec with hosts: gets a summary and a view per host.

Everything is named kvt-wb-* (bridges kvtwb*), in 10.157.0.0/16; removed before and
after. KVMNET_WEB_SHOTS=DIR keeps each view's screenshot there (docs/ has them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyroute2 import netns as pr_netns

from lab.browser import CHROMIUM, KVMNET, Served, launch
from lab.guest import domain_xml, guest_files, serial_log_path, wait_for_serial
from lab.libvirtd import Libvirtd, iproute, remove_objects

pytest.importorskip("playwright.sync_api", reason="Playwright is in the test extra")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

PREFIX = "kvt-wb-"
NAT, ISO, GUEST = "kvt-wb-nat", "kvt-wb-iso", "kvt-wb-g1"
GUEST_IP = "10.157.1.20"
WEB_NS = "kvt-wb-web"          # where serve listens on a non-loopback address
WEB_ADDR = "10.157.9.1"
SCOPE = f"{PREFIX}*"
SPEC: dict[str, Any] = {
    "networks": {
        NAT: {"mode": "nat", "bridge": "kvtwb-nat0",
              "ipv4": {"address": "10.157.1.1/24", "dhcp": "10.157.1.100-10.157.1.150"},
              "domain": "wb.test",
              "dns": {"hosts": [{"ip": "10.157.1.5", "names": ["svc.wb.test"]}]},
              "forwards": [{"proto": "tcp", "host_port": 18022, "guest": GUEST,
                            "guest_port": 80}]},
        ISO: {"mode": "isolated", "bridge": "kvtwb-iso0",
              "ipv4": {"address": "10.157.2.1/24"}},
    },
    "guests": {GUEST: {"interfaces": [{"network": NAT, "ipv4": GUEST_IP}]}},
}
SHOTS = os.environ.get("KVMNET_WEB_SHOTS")
SEEN = 20.0     # how long the page may take to show a change (it reads every second)


def kvmnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KVMNET, *args], capture_output=True, text=True, timeout=180)


class Lab:
    def __init__(self, libvirtd: Libvirtd, conn: Any, work: Path) -> None:
        self.libvirtd, self.conn, self.work = libvirtd, conn, work
        self.root = work / "root"
        (self.root / "etc/libvirt").mkdir(parents=True, exist_ok=True)
        self.spec = self.write("spec.yaml", SPEC)
        self.log = serial_log_path(GUEST)

    @property
    def common(self) -> list[str]:
        return ["-c", self.libvirtd.uri, "--netns", self.libvirtd.netns, "--root",
                str(self.root), "--scope", SCOPE]

    def write(self, name: str, spec: dict[str, Any]) -> Path:
        """One owner for every file this test writes (a spec's default owner is its
        file's path: spec.yaml and changed.yaml would be two owners)."""
        path = self.work / name
        path.write_text(yaml.safe_dump({"owner": "kvt-wb", **spec}, sort_keys=False))
        return path

    def apply(self, path: Path, *extra: str) -> None:
        p = kvmnet("apply", str(path), *self.common, "--yes", "--json", *extra)
        assert p.returncode == 0, p.stdout + p.stderr

    def plan(self, path: Path) -> dict[str, Any]:
        p = kvmnet("plan", str(path), *self.common, "--json")
        assert p.returncode == 0, p.stdout + p.stderr
        return json.loads(p.stdout)

    def shot(self, page: Any, name: str) -> None:
        out = Path(SHOTS) if SHOTS else self.work
        page.screenshot(path=str(out / f"web-{name}.png"), full_page=True)


def _clean(lab: Lab | None, conn: Any) -> None:
    if lab is not None:   # the forward's nft rules and the hook go with an empty spec
        for dom in conn.listAllDomains():
            if dom.name().startswith(PREFIX) and dom.isActive():
                dom.destroy()
        kvmnet("apply", str(lab.write("empty.yaml", {"networks": {}})), *lab.common,
               "--yes", "--allow-destroy")
    remove_objects(conn, PREFIX)
    if WEB_NS in pr_netns.listnetns():
        pr_netns.remove(WEB_NS)


@pytest.fixture(scope="module")
def lab(libvirtd: Libvirtd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    conn = libvirtd.open()
    it = None
    try:
        _clean(None, conn)
        it = Lab(libvirtd, conn, tmp_path_factory.mktemp("web"))
        kernel, initrd = guest_files()
        conn.defineXML(domain_xml(GUEST, kernel, initrd, [], it.log))
        it.apply(it.spec)
        yield it
    finally:
        try:
            _clean(it, conn)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served(lab: Lab) -> Iterator[Served]:
    with Served([*lab.common, "--spec", str(lab.spec), "--listen", "127.0.0.1:0",
                 "--refresh", "1"]) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (scripts/setup test does)")
    with sync_playwright() as pw:
        b = launch(pw)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 860})
    p = ctx.new_page()
    errors: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield p
    finally:
        ctx.close()
    assert not errors, f"the page logged errors (CSP, script): {errors}"


def _mac(lab: Lab) -> str:
    show = json.loads(kvmnet("show", *lab.common[:6], "--json").stdout)
    return next(x["mac"] for x in show["interfaces"] if x["guest"] == GUEST)


@pytest.mark.e2e
def test_1_page_shows_the_applied_networks_and_guest(lab, served, page):
    page.goto(served.url + "networks")
    nat = page.locator(f'tr[data-network="{NAT}"]')
    expect(nat).to_contain_text("10.157.1.1/24")
    expect(nat).to_contain_text("10.157.1.100-10.157.1.150")
    expect(nat).to_contain_text("svc.wb.test")
    expect(nat).to_contain_text(f"tcp :18022 → {GUEST}:80")
    expect(nat.locator("td.state")).to_have_text("active")
    expect(nat).to_contain_text("kvt-wb")          # the owner the spec names
    expect(page.locator(f'tr[data-network="{ISO}"]')).to_contain_text("isolated")
    lab.shot(page, "networks")
    page.goto(served.url + "guests")
    row = page.locator(f'tr[data-guest="{GUEST}"]')
    expect(row).to_contain_text(_mac(lab))
    expect(row).to_contain_text(f"network {NAT}")
    expect(row).to_contain_text("shut off")
    page.goto(served.url + "plan")
    expect(page.locator("#plan-summary")).to_contain_text("No changes")
    page.goto(served.url + "forwards")
    expect(page.locator("#forwards tbody tr")).to_contain_text(["18022"])
    lab.shot(page, "forwards")
    page.goto(served.url + "doctor")
    expect(page.locator("#doctor tbody tr").first).to_be_visible()
    lab.shot(page, "doctor")


@pytest.mark.e2e
def test_2_a_lease_appears_after_the_guest_boots(lab, served, page):
    page.goto(served.url + "leases")
    expect(page.locator(f'tr[data-ip="{GUEST_IP}"]')).to_have_count(0)
    dom = lab.conn.lookupByName(GUEST)
    dom.create()
    wait_for_serial(lab.log, rf"KVMNET-LEASE {re.escape(GUEST_IP)} ", 150,
                    alive=dom.isActive)
    t0 = time.monotonic()
    row = page.locator(f'tr[data-ip="{GUEST_IP}"]')
    expect(row).to_be_visible(timeout=SEEN * 1000)       # no reload: the page refreshed
    print(f"lease on the page {time.monotonic() - t0:.1f}s after the guest printed it")
    expect(row).to_contain_text(_mac(lab))
    expect(row).to_contain_text("dhcp-lease")
    expect(row).to_contain_text(re.compile(r"UTC \(in \d+"))
    lab.shot(page, "leases")
    page.goto(served.url + "guests")
    g = page.locator(f'tr[data-guest="{GUEST}"]')
    expect(g).to_contain_text("running")
    expect(g.locator("td.addresses")).to_contain_text(f"{GUEST_IP} (dhcp-lease")
    lab.shot(page, "guests")
    page.goto(served.url + "topology")
    expect(page.locator(f'g[data-id="guest:{GUEST}"]')).to_have_class(re.compile("running"))
    expect(page.locator(f'g[data-id="net:{NAT}"]')).to_have_class(re.compile("active"))
    expect(page.locator(f'g[data-id="net:{NAT}"]')).not_to_have_class(re.compile("drift"))
    lab.shot(page, "topology")


@pytest.mark.e2e
def test_3_a_virsh_change_shows_as_drift(lab, served, page):
    page.goto(served.url + "topology")
    node = page.locator(f'g[data-id="net:{NAT}"]')
    expect(node).not_to_have_class(re.compile("drift"))
    host = "<host ip='10.157.1.6'><hostname>drift.wb.test</hostname></host>"
    t0 = time.monotonic()
    p = subprocess.run(["virsh", "-q", "-c", lab.libvirtd.uri, "net-update", NAT, "add",
                        "dns-host", host, "--live", "--config"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    expect(node).to_have_class(re.compile(r"\bdrift\b"), timeout=SEEN * 1000)
    print(f"drift on the page {time.monotonic() - t0:.1f}s after virsh net-update")
    lab.shot(page, "topology-drift")
    page.goto(served.url + "networks")
    expect(page.locator(f'tr[data-network="{NAT}"]')).to_have_class(re.compile("drift"))
    page.goto(served.url + "plan")
    act = page.locator(f'li.action[data-target="network/{NAT}"]')
    expect(act).to_have_attribute("data-kind", "network.update")
    expect(act).to_contain_text("[live]")
    expect(act.locator("pre.diff")).to_contain_text("drift.wb.test")


@pytest.mark.e2e
def test_4_plan_view_of_a_changed_spec_is_kvmnet_plan(lab, served, page):
    changed = json.loads(json.dumps(SPEC))
    changed["networks"][ISO]["mtu"] = 1400
    changed["networks"][NAT]["dns"]["hosts"].append(
        {"ip": "10.157.1.7", "names": ["new.wb.test"]})
    changed["networks"]["kvt-wb-rt"] = {"mode": "route", "bridge": "kvtwb-rt0",
                                        "ipv4": {"address": "10.157.3.1/24"}}
    path = lab.write("changed.yaml", changed)
    want = lab.plan(path)
    assert want["changes"]
    with Served([*lab.common, "--spec", str(path), "--listen", "127.0.0.1:0", "--no-doctor"]
                ) as s:
        page.goto(s.url + "plan")
        items = page.locator("li.action")
        expect(items).to_have_count(len(want["actions"]))
        for i, a in enumerate(want["actions"]):
            li = items.nth(i)
            assert (li.get_attribute("data-kind"), li.get_attribute("data-target"),
                    li.get_attribute("data-impact")) == (a["kind"], a["target"], a["impact"])
            marker = f"[skipped: {a['skipped']}]" if a.get("skipped") else f"[{a['impact']}]"
            assert li.locator(".marker").inner_text() == marker
            assert a["summary"] in li.inner_text()
            diff = li.locator("pre.diff")
            got = diff.inner_text().splitlines() if diff.count() else []
            assert got == a["details"], (a["target"], got)
        lab.shot(page, "plan")


def _in_ns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", WEB_NS, *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def web_ns() -> Iterator[str]:
    """A namespace of our own with WEB_ADDR on a veth (both ends in it): 'elsewhere'
    than loopback."""
    def links() -> None:
        with iproute(WEB_NS) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="kvtwb-w0", kind="veth", peer="kvtwb-w1")
            for name in ("kvtwb-w0", "kvtwb-w1"):
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
            idx = ipr.link_lookup(ifname="kvtwb-w0")[0]
            ipr.addr("add", index=idx, address=WEB_ADDR, prefixlen=24)

    if WEB_NS in pr_netns.listnetns():
        pr_netns.remove(WEB_NS)
    pr_netns.create(WEB_NS)
    try:
        # pyroute2 runs an asyncio loop, and so does Playwright's sync API in this
        # thread (the module's browser): netlink gets a thread of its own
        with ThreadPoolExecutor(1) as pool:
            pool.submit(links).result()
        yield WEB_NS
    finally:
        pr_netns.remove(WEB_NS)


# A one-shot HTTP client run inside the namespace: status, headers, body as JSON; no
# redirects followed; TLS without verification (the test's own self-signed certificate).
CLIENT = r"""
import json, ssl, sys, urllib.error, urllib.request
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
opener = urllib.request.build_opener(Stay, urllib.request.HTTPSHandler(context=ctx))
req = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))
try:
    r = opener.open(req, timeout=20)
except urllib.error.HTTPError as e:
    r = e
print(json.dumps({"status": r.status, "headers": dict(r.headers.items()),
                  "body": r.read().decode(errors="replace")}))
"""


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], str]:
    p = _in_ns(sys.executable, "-c", CLIENT, url, json.dumps(headers))
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    return r["status"], {k.lower(): v for k, v in r["headers"].items()}, r["body"]


def _token_rules(s: Served) -> None:
    """What every non-loopback listener must do, TLS or not."""
    assert s.token
    for path in ("", "networks", "api/show", "static/app.js", "fragment/networks"):
        code, _, body = _get(s.url + path)
        assert code == 401 and NAT not in body and "token" in body, (path, code)
    assert _get(s.url + "api/show", authorization="Bearer nope")[0] == 401
    assert _get(s.url + "api/show?token=nope")[0] == 401
    code, _, body = _get(s.url + "api/show", authorization=f"Bearer {s.token}")
    assert code == 200 and NAT in {n["name"] for n in json.loads(body)["networks"]}
    code, head, _ = _get(f"{s.url}networks?token={s.token}")
    assert code == 303 and head["location"] == "/networks"
    assert "HttpOnly; SameSite=Strict" in head["set-cookie"]
    cookie = head["set-cookie"].split(";", 1)[0]
    code, _, body = _get(s.url + "networks", cookie=cookie)
    assert code == 200 and f'data-network="{NAT}"' in body


@pytest.mark.e2e
def test_5_elsewhere_needs_the_token(lab, web_ns):
    ns = ["ip", "netns", "exec", web_ns]
    refused = subprocess.run([*ns, KVMNET, "serve", "-c", lab.libvirtd.uri, "--listen",
                              f"{WEB_ADDR}:0"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "without TLS" in refused.stderr, refused.stderr
    with Served(["-c", lab.libvirtd.uri, "--listen", f"{WEB_ADDR}:0", "--insecure-http",
                 "--no-doctor"], prefix=ns) as s:
        assert s.url.startswith(f"http://{WEB_ADDR}:")
        _token_rules(s)
        assert "secure" not in _get(f"{s.url}?token={s.token}")[1]["set-cookie"].lower()


@pytest.mark.e2e
def test_5b_elsewhere_with_tls(lab, web_ns, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl (the command) makes this test's certificate; not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={WEB_ADDR}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    with Served(["-c", lab.libvirtd.uri, "--listen", f"{WEB_ADDR}:0", "--tls-cert",
                 str(cert), "--tls-key", str(key), "--no-doctor"],
                prefix=["ip", "netns", "exec", web_ns]) as s:
        assert s.url.startswith(f"https://{WEB_ADDR}:")
        _token_rules(s)
        assert "; Secure" in _get(f"{s.url}?token={s.token}")[1]["set-cookie"]


@pytest.mark.e2e
def test_6_hosts_spec_has_a_summary_and_a_view_per_host(lab, page):
    spec = {"hosts": {"lab": {"uri": lab.libvirtd.uri, "netns": lab.libvirtd.netns},
                      "mem": {"uri": "test:///default"}},
            **json.loads(json.dumps(SPEC))}
    for net in spec["networks"].values():
        net["hosts"] = ["lab"]
        net.pop("forwards", None)   # (their state file is under --root, which hosts: lack)
    spec["guests"][GUEST]["hosts"] = ["lab"]
    spec["networks"]["kvt-wb-mem"] = {"mode": "isolated", "bridge": "kvtwb-mem0",
                                      "ipv4": {"address": "10.157.4.1/24"}, "hosts": ["mem"]}
    path = lab.write("hosts.yaml", spec)
    with Served(["--spec", str(path), "--listen", "127.0.0.1:0", "--root", str(lab.root),
                 "--scope", SCOPE, "--no-doctor"]) as s:
        page.goto(s.url)
        expect(page).to_have_url(re.compile(r"/summary$"))
        expect(page.locator('table.grid a[href="/topology?host=lab"]')).to_have_count(1)
        mem = page.locator("table.grid tbody tr", has_text="test:///default")
        expect(mem.locator("a.status-changed")).to_have_text("changed")   # a new network
        lab.shot(page, "summary")
        page.goto(s.url + "networks?host=mem")
        expect(page.locator('tr[data-network="default"]')).to_be_visible()
        page.goto(s.url + "plan?host=mem")
        expect(page.locator('li.action[data-target="network/kvt-wb-mem"]')).to_be_visible()
        page.goto(s.url + "networks?host=lab")
        expect(page.locator(f'tr[data-network="{NAT}"]')).to_be_visible()
