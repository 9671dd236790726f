"""host.resolve_guests (issue 22, item 2): nsswitch.conf edited and undone, the plan's
host.names and host.resolved actions, systemd-resolved's D-Bus calls (built without a
bus: resolved does not run on the project's machines, so its calls are pinned here
message for message, and the lab proves the NSS side: tests/e2e/test_7_dns.py), and
doctor's report."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import pytest

from kvmnet.backend import resolved
from kvmnet.backend.names import read_names, write_nsswitch
from kvmnet.doctor.checks import Facts
from kvmnet.doctor.names import check_names
from kvmnet.model.live import LinkDns, LiveState, NamesLive
from kvmnet.model.spec import Spec
from kvmnet.plan import make_plan
from kvmnet.render.nsswitch import (
    MARKER,
    has_libvirt,
    hosts_sources,
    owned,
    with_libvirt,
    without_libvirt,
)

DEBIAN = """# /etc/nsswitch.conf
passwd:         files systemd
hosts:          files mdns4_minimal [NOTFOUND=return] dns myhostname # mine
networks:       files
"""


def test_libvirt_goes_after_files_and_comes_out_again() -> None:
    text = with_libvirt(DEBIAN)
    assert hosts_sources(text) == ["files", "libvirt", "libvirt_guest", "mdns4_minimal",
                                   "[NOTFOUND=return]", "dns", "myhostname"]
    assert "# mine" in text and owned(text) and has_libvirt(text)
    assert with_libvirt(text) == text                     # once only
    back = without_libvirt(text)
    assert hosts_sources(back) == hosts_sources(DEBIAN) and not owned(back)
    assert back.replace("  ", " ").split() == DEBIAN.replace("  ", " ").split()


@pytest.mark.parametrize(("before", "after"), [
    (None, ["files", "libvirt", "libvirt_guest", "dns"]),
    ("passwd: files\n", ["files", "libvirt", "libvirt_guest", "dns"]),
    ("hosts: dns\n", ["libvirt", "libvirt_guest", "dns"]),
    ("hosts: files libvirt dns\n", ["files", "libvirt", "libvirt_guest", "dns"]),
])
def test_every_starting_point(before: str | None, after: list[str]) -> None:
    assert hosts_sources(with_libvirt(before)) == after


def test_the_file_is_written_safely_with_a_backup(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nsswitch.conf").write_text(DEBIAN)
    saved = write_nsswitch(tmp_path, with_libvirt(DEBIAN))
    assert saved is not None and saved.read_text() == DEBIAN
    assert MARKER in (tmp_path / "etc/nsswitch.conf").read_text()
    live = read_names(tmp_path, resolved=False)
    assert live.nsswitch is not None and owned(live.nsswitch) and live.nss_module is None
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libnss_libvirt.so.2").write_bytes(b"")
    assert read_names(tmp_path, resolved=False).nss_module == \
        "/usr/lib/x86_64-linux-gnu/libnss_libvirt.so.2"


SPEC = {"networks": {"n": {"bridge": "kvtdn-br9", "domain": "lab.test",
                           "ipv4": {"address": "10.156.9.1/24"}}}}


def _plan(resolve: bool, names: NamesLive | None) -> list[tuple[str, str]]:
    spec = Spec.model_validate({**SPEC, "host": {"resolve_guests": resolve}})
    plan = make_plan(spec, LiveState("qemu:///system", {}, {}, names=names))
    assert not plan.errors, plan.errors
    return [(a.kind, a.summary) for a in plan.actions if a.kind.startswith("host.")]


MODULE = "/usr/lib/x86_64-linux-gnu/libnss_libvirt.so.2"


def test_plan_adds_the_module_once_and_undoes_only_its_own() -> None:
    got = _plan(True, NamesLive(DEBIAN, MODULE))
    assert [k for k, _ in got] == ["host.names"] and "add" in got[0][1]
    assert _plan(True, NamesLive(with_libvirt(DEBIAN), MODULE)) == []
    # off: kvmnet's own edit is undone, an admin's own 'libvirt' left alone
    got = _plan(False, NamesLive(with_libvirt(DEBIAN), MODULE))
    assert [k for k, _ in got] == ["host.names"] and "take" in got[0][1]
    assert _plan(False, NamesLive("hosts: files libvirt libvirt_guest dns\n", MODULE)) == []


def test_plan_refuses_without_the_module() -> None:
    spec = Spec.model_validate({**SPEC, "host": {"resolve_guests": True}})
    plan = make_plan(spec, LiveState("qemu:///system", {}, {}, names=NamesLive(DEBIAN)))
    assert [f.path for f in plan.errors] == [("host", "resolve_guests")]
    assert "apt-get install libnss-libvirt" in plan.errors[0].message


def test_plan_sets_resolveds_link_where_it_runs() -> None:
    want = LinkDns(("10.156.9.1",), ("~lab.test",))
    names = NamesLive(with_libvirt(DEBIAN), MODULE, resolved=True)
    got = _plan(True, names)
    assert [k for k, _ in got] == ["host.resolved"] and "kvtdn-br9" in got[0][1]
    done = NamesLive(names.nsswitch, MODULE, True, {"kvtdn-br9": want})
    assert _plan(True, done) == []


def test_resolveds_calls_message_for_message() -> None:
    m = resolved.set_link_dns(7, ["10.156.9.1", "fd00::1"])
    h = {f.name: v for f, v in m.header.fields.items()}
    assert (h["path"], h["destination"], h["interface"], h["member"], h["signature"]) == (
        "/org/freedesktop/resolve1", "org.freedesktop.resolve1",
        "org.freedesktop.resolve1.Manager", "SetLinkDNS", "ia(iay)")
    assert m.body == (7, [(socket.AF_INET, bytes([10, 156, 9, 1])),
                          (socket.AF_INET6, bytes([0xfd] + 14 * [0] + [1]))])
    m = resolved.set_link_domains(7, ["~lab.test", "search.test"])
    assert m.body == (7, [("lab.test", True), ("search.test", False)])
    assert resolved.get_link(7).body == (7,)
    m = resolved.get_property("/org/freedesktop/resolve1/link/_37", "Domains")
    assert m.body == ("org.freedesktop.resolve1.Link", "Domains")
    assert resolved.link_view([(2, bytes([10, 156, 9, 1]))], [("lab.test", True)]) == \
        LinkDns(("10.156.9.1",), ("~lab.test",))


def test_doctor_says_what_is_in_use_and_what_is_missing() -> None:
    spec = Spec.model_validate({**SPEC, "host": {"resolve_guests": True}})
    live = LiveState("qemu:///system", {}, {})
    c = check_names(Facts(uri="qemu:///system", spec=spec, live=live,
                          names=NamesLive(DEBIAN, None)))
    assert c.status == "fail" and "not installed" in c.message
    assert "apt-get install libnss-libvirt" in c.fix
    c = check_names(Facts(uri="qemu:///system", spec=spec, live=live,
                          names=NamesLive(with_libvirt(DEBIAN), MODULE, resolved=True)))
    assert c.status == "warn" and "In use: NSS module" in c.message
    assert "resolvectl domain kvtdn-br9 ~lab.test" in c.fix
    c = check_names(Facts(uri="qemu:///system", spec=spec, live=live,
                          names=NamesLive(with_libvirt(DEBIAN), MODULE)))
    assert c.status == "ok" and "not running" in c.message


def test_the_hook_sets_resolved_again_when_a_network_starts(tmp_path: Path) -> None:
    """What libvirt's `started` call does: the network XML on stdin -> one set_link."""
    from kvmnet.backend import names_hook
    from kvmnet.render.network import network_xml

    spec = Spec.model_validate(SPEC)
    xml = network_xml(spec, "n")
    calls: list[tuple[str, LinkDns]] = []
    line = names_hook.run_names_hook(xml, "n", "started",
                                     lambda b, link: calls.append((b, link)))
    assert calls == [("kvtdn-br9", LinkDns(("10.156.9.1",), ("~lab.test",)))], line
    assert names_hook.run_names_hook(xml, "n", "stopped", lambda b, x: calls.append(
        (b, x))).endswith("nothing to do") and len(calls) == 1
    foreign = re.sub(r"<metadata>.*</metadata>", "", xml, flags=re.S)
    assert names_hook.link_for(foreign) is None            # not kvmnet's: left alone
    (tmp_path / "etc/libvirt").mkdir(parents=True)
    assert names_hook.install(tmp_path) is not None
    hook = tmp_path / names_hook.HOOK_FILE
    assert hook.stat().st_mode & 0o777 == 0o755 and "kvmnet.backend.names_hook" in \
        hook.read_text()
    assert names_hook.install(tmp_path) is None            # once
    assert names_hook.install(tmp_path / "nothing") is None  # no libvirt here: no hook


def test_the_hook_logs_through_the_safe_path_and_takes_no_options_from_names(
        tmp_path: Path) -> None:
    """The installed script, run as libvirt runs it: a network named like an option is a
    name (the script passes `--`), and a symlink planted at the log is never followed."""
    from kvmnet.backend import names_hook
    from kvmnet.backend.forward_files import LOG_FILE

    (tmp_path / "etc/libvirt").mkdir(parents=True)
    assert names_hook.install(tmp_path) is not None
    hook = tmp_path / names_hook.HOOK_FILE
    log = tmp_path / LOG_FILE
    xml = "<network><name>--log=/x</name></network>"   # not kvmnet's: nothing to set

    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(hook), "--log=/x", "started", "begin", "-"], input=xml,
                              capture_output=True, text=True, timeout=60, check=False)

    r = call()
    assert r.returncode == 0 and r.stdout == "", r
    assert "--log=/x started: no domain of kvmnet's to route" in log.read_text()
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    log.unlink()
    log.symlink_to(victim)
    r = call()
    assert r.returncode == 0, r                       # libvirt's start never fails
    assert victim.read_text() == "root's file\n" and log.is_symlink()
