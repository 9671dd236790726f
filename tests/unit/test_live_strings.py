"""Strings from the live system reach the terminal as text, never as commands to it
(issue 17, item 4): network and guest names from libvirt, DHCP lease hostnames and
addresses, what a guest agent reports (any string a guest chooses).

Generated: hypothesis joins pieces of terminal escapes (CSI, OSC, C1), rich markup
([bold], [link=...]), line breaks followed by a forged table row, carriage returns,
tabs, bidi overrides, line separators and NUL, and puts the result at each place a
live string comes from, in the fake backend (which keeps what libvirt keeps) and in
libvirt's own test:///default driver; then `show`, `leases` and `plan` print it, on a
pipe and on a terminal, as tables and as --json. What must hold: no raw control or
bidi character reaches the output, no line is added (a row per row, whatever the
names hold), rich markup is printed as written (its brackets are there), and --json
reads back to the very strings.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from kvmnet.backend.fake import FakeBackend
from kvmnet.backend.neigh import merge_addresses, parse_agent
from kvmnet.backend.read import read_state
from kvmnet.cli import output
from kvmnet.cli import show as show_cli
from kvmnet.cli.main import main
from kvmnet.model.live import HostState
from kvmnet.service.views import show_data

BUDGET = float(os.environ.get("KVMNET_FUZZ_SECONDS", "20"))
EXAMPLES = max(50, int(300 * BUDGET / 20))
# what a terminal would act on (tab and line feed are checked by counting lines)
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
PIECES = ["\x1b[2J", "\x1b]0;pwned\x07", "\x9b31m", "\x1b[1A\x1b[2K", "[bold red]",
          "[/]", "[link=file:///etc/shadow]", "\\[x]", "\n", "\n│ forged │ row │ yes │",
          "\r", "\t", "\u202e", "\u2028", "\x00", ":thumbs_up:", "é网络", "%s", "web",
          "-", "'", '"', "<", "&"]
hostile = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), min_size=1,
                   max_size=5).map("".join).filter(lambda s: s.strip() != "")
XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
MAC = "52:54:00:5c:00:01"


def _xml_name(s: str) -> str:
    """What libvirt can hold as a name: XML 1.0 characters, no '/', not blank."""
    s = XML_CHARS.sub("", s).replace("/", "")
    return s if s.strip() else f"x{s}"


def _network(name: str) -> str:
    root = etree.fromstring("<network><forward mode='nat'/><ip address='10.151.0.1' "
                            "prefix='24'/></network>")
    etree.SubElement(root, "name").text = name
    return etree.tostring(root, encoding="unicode")


def _domain(name: str, net: str) -> str:
    root = etree.fromstring(f"<domain type='test'><devices><interface type='network'>"
                            f"<mac address='{MAC}'/><source network='x'/>"
                            "</interface></devices></domain>")
    etree.SubElement(root, "name").text = name
    root.find("devices/interface/source").set("network", net)  # type: ignore[union-attr]
    return etree.tostring(root, encoding="unicode")


@pytest.fixture(autouse=True)
def _consoles() -> Iterator[None]:
    saved = output.out, show_cli.out
    yield
    output.out, show_cli.out = saved


def _capture(terminal: bool) -> io.StringIO:
    buf = io.StringIO()
    opts: dict[str, Any] = {"file": buf, "width": 4000}
    if terminal:
        opts.update(force_terminal=True, color_system="truecolor")
    o = output.Out(**opts)
    for mod in (output, show_cli):
        mod.out = o  # type: ignore[attr-defined]
    return buf


def _plain(buf: io.StringIO) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())  # the terminal's own colours


def _check(text: str, lines: int, terminal: bool, *values: str) -> None:
    """No raw control character, as many lines as the same tables with plain names
    have (no forged row), and each value there as text (in a pipe, one field: a space
    inside a name is spelled, so awk still finds every column)."""
    assert not RAW.search(text), repr(text)
    assert len(text.splitlines()) == lines, text
    for v in values:
        shown = output.one_line(v) if terminal else output.cell(v)
        assert shown in text, (v, text)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(net=hostile, guest=hostile, hostname=hostile, agent_addr=hostile, ifname=hostile,
       terminal=st.booleans())
def test_show_and_leases_print_live_strings_as_text(net: str, guest: str, hostname: str,
                                                    agent_addr: str, ifname: str,
                                                    terminal: bool) -> None:
    net, guest = _xml_name(net), _xml_name(guest)
    fake = FakeBackend()
    fake.load_network(_network(net), active=True)
    fake.load_domain(_domain(guest, net), running=True)
    live = read_state(fake, HostState(readable=False))
    assert set(live.networks) == {net} and set(live.domains) == {guest}
    lease = {"network": net, "mac": MAC, "ip": "10.151.0.5", "prefix": 24,
             "hostname": hostname, "expiry": 1, "source": "dhcp-lease"}
    agent = parse_agent(guest, {ifname: {"hwaddr": MAC, "addrs": [
        {"type": 1, "addr": f"2001:db8::5%{agent_addr}", "prefix": 64},
        {"type": 0, "addr": agent_addr, "prefix": 24}]}})
    assert [a.ip for a in agent] == ["2001:db8::5"]  # the text the guest sent is not kept
    rows = merge_addresses(live, [lease], (), agent)
    _print_all(terminal, live, rows)
    plain = _lines(terminal, "net", "vm", "host")
    text = _print_all(terminal, live, rows)
    _check(text, plain, terminal, net, guest, hostname)
    buf = _capture(terminal)
    output.out.json(show_data(live, rows))
    back = json.loads(_plain(buf))
    assert back["networks"][0]["name"] == net and back["interfaces"][0]["guest"] == guest
    assert not RAW.search(_plain(buf))


def _print_all(terminal: bool, live: Any, rows: list[dict[str, Any]]) -> str:
    """show's tables and the leases table, as the commands print them."""
    buf = _capture(terminal)
    show_cli.show_tables(show_data(live, rows))
    output.print_table("guest addresses", [output.Column(c) for c in
                                           ("network", "mac", "ip", "hostname")],
                       ([r["network"], r["mac"], r["ip"], r["hostname"] or "-"]
                        for r in rows))
    return _plain(buf)


def _lines(terminal: bool, net: str, guest: str, hostname: str) -> int:
    """How many lines the same tables take with plain names."""
    fake = FakeBackend()
    fake.load_network(_network(net), active=True)
    fake.load_domain(_domain(guest, net), running=True)
    live = read_state(fake, HostState(readable=False))
    lease = {"network": net, "mac": MAC, "ip": "10.151.0.5", "prefix": 24,
             "hostname": hostname, "expiry": 1, "source": "dhcp-lease"}
    agent = parse_agent(guest, {"eth0": {"hwaddr": MAC, "addrs": [
        {"type": 1, "addr": "2001:db8::5", "prefix": 64}]}})
    return len(_print_all(terminal, live, merge_addresses(live, [lease], (), agent))
               .splitlines())


@settings(max_examples=max(20, EXAMPLES // 6), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(net=hostile)
def test_a_plan_names_a_live_network_as_text(net: str) -> None:
    """A network kvmnet made, renamed behind its back to a hostile name, is removed by a
    spec without it: the plan line names it, on one line, as text."""
    from kvmnet.plan import make_plan
    from kvmnet.plan.netxml import mark_managed
    from kvmnet.spec.load import load_text

    net = _xml_name(net)
    fake = FakeBackend()
    fake.load_network(mark_managed(_network(net)), active=True)
    live = read_state(fake, HostState(readable=False))
    spec, _ = load_text("networks: {}\n", "s.yaml")
    plan = make_plan(spec, live, allow := frozenset())
    assert not allow
    buf = _capture(False)
    output.show_plan(plan, "test:///x")
    text = _plain(buf)
    assert not RAW.search(text), repr(text)
    lines = text.splitlines()
    assert len(lines) == 2 + sum(1 + len(a.details) for a in plan.actions), text
    assert any(output.one_line(net) in ln for ln in lines), text


@pytest.mark.parametrize("name", ["a\nb", "x\n│ forged │ row │", "[bold]n[red on white]",
                                  "w\u202eeb", "n\x85\u2028\tm"])
def test_test_driver_names_in_show_and_leases(name: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """libvirt's test:///default takes such names: kvmnet show and leases, from the
    command line, print each on its own one row."""
    import libvirt

    from kvmnet.backend import libvirt as conn_mod

    real = libvirt.open
    monkeypatch.setenv("COLUMNS", "4000")

    def seeded(uri: str | None = None) -> Any:
        c = real(uri)
        c.networkDefineXML(_network(name))
        return c

    monkeypatch.setattr(conn_mod.libvirt, "open", seeded)
    assert main(["show", "-c", "test:///default"]) == 0
    text = capsys.readouterr().out
    rows = [ln for ln in text.splitlines() if output.cell(name) in ln]  # capsys: a pipe
    assert len(rows) == 1 and not RAW.search(text), text
    assert main(["leases", "-c", "test:///default"]) == 0
    assert not RAW.search(capsys.readouterr().out)
    assert main(["show", "-c", "test:///default", "--json"]) == 0
    nets = {n["name"] for n in json.loads(capsys.readouterr().out)["networks"]}
    assert name in nets
    # a plan next to it (the name is not the spec's: left alone, no traceback)
    seed = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "seed.yaml")
    assert main(["plan", seed, "-c", "test:///default"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Plan for test:///default") and not RAW.search(text), text
    # an error naming such a name is one line too
    assert main(["leases", f"{name}-gone", "-c", "test:///default"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kvmnet: error: no such network") and not RAW.search(err), err
    assert len(err.splitlines()) == 1 and output.one_line(f"{name}-gone") in err, err


# ---------------------------------------------------------------- doctor's fix commands

@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(word=hostile | st.text(min_size=1, max_size=12))
def test_a_live_name_in_a_fix_command_is_one_shell_word(word: str) -> None:
    """doctor prints commands to paste: a live name in one is one word on one line, and
    bash reads it back as the very name (no second command, no expansion)."""
    import subprocess

    from kvmnet.doctor.checks import sh

    word = word.replace("\x00", "")  # (no program argument can hold a NUL)
    quoted = sh(word)
    assert quoted.isprintable() and "\n" not in quoted
    if word:
        got = subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True,
                             check=True, env={**os.environ, "LC_ALL": "C.UTF-8"}).stdout
        assert got == word.encode(errors="surrogateescape"), (word, quoted)


@settings(max_examples=max(20, EXAMPLES // 6), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(net=hostile, bridge=hostile)
def test_doctor_prints_a_hostile_live_network_as_text(net: str, bridge: str) -> None:
    """A live network whose bridge is missing: doctor fails it and prints the fix, each
    line one line, with the names as text and the fix's names quoted."""
    from kvmnet.cli import diag
    from kvmnet.doctor.checks import Facts, sh
    from kvmnet.doctor.links import check_bridges

    net, bridge = _xml_name(net), _xml_name(bridge)
    fake = FakeBackend()
    root = etree.fromstring(_network(net))
    etree.SubElement(root, "bridge").set("name", bridge)
    fake.load_network(etree.tostring(root, encoding="unicode"), active=True)
    live = read_state(fake, HostState(readable=False))
    facts = Facts(uri="qemu:///system", live=live, live_on_host=True, host=HostState())
    check = check_bridges(facts)
    assert check.status == "fail", check
    assert f"virsh net-destroy {sh(net)} && virsh net-start {sh(net)}" in check.fix
    buf = _capture(False)
    saved = diag.out
    diag.out = output.out
    try:
        diag.out.print(output.styled(diag._MARK[check.status], f" {check.title}: "
                                     f"{check.message}"))
        for line in check.fix.splitlines():
            diag.out.print(output.styled(f"       fix: {line}"))
    finally:
        diag.out = saved
    text = _plain(buf)
    assert not RAW.search(text), repr(text)
    assert len(text.splitlines()) == 1 + len(check.fix.splitlines()) == 2, text
