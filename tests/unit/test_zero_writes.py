"""Bad input changes nothing (issue 9, item 1).

Every bad spec of the catalogue (tests/data/bad/, see test_bad_input.py), every
generated bad file, every spec the live state refuses, every bad command line and
every bad -c URI goes through `kvmnet plan` and `kvmnet apply --yes`, in-process,
and must exit 1 with its located message, no traceback, and **zero write calls**:

- to libvirt: every Connection kvmnet opens is recorded and its `writes` list must
  stay empty; on top of that every libvirt method that changes something
  (virConnect.networkDefineXML, virNetwork.create, virDomain.attachDeviceFlags, ...)
  is replaced by a tripwire, so a write that bypassed Connection.write is caught too;
- to the host: the entry points that change it (kvmnet.backend.host.set_master, the
  host-bridge transaction, persist, the watchdog, the apply lock, fsutil, OVN
  northbound writes), pyroute2's netlink writes (link/addr/route/... other than
  dump/get), every subprocess (nft, ip, dot, ...) and every file-system write call
  of the os module and open() for writing are tripwires while kvmnet runs.

The tripwires are a test seam (monkeypatching), not code in kvmnet. A tripwire
records the call and raises, so a caller that swallows exceptions is caught by the
record all the same.

For spec cases the connection is redirected to an in-process test:///default that
still calls itself by the URI asked for, so `-c qemu:///system` exercises the real
(non-test) code path (lock, host reads) without a daemon; bad URIs go to libvirt
unredirected.
"""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest

import kvmnet.backend.host
from kvmnet.backend import libvirt as conn_mod
from kvmnet.backend.libvirt import Connection
from kvmnet.cli.main import main
from lab.catalogue import BAD, CASES, expectations

GOOD = "networks:\n  kvt-zw-net:\n    mode: isolated\n    ipv4: {address: 10.236.1.1/24}\n"


# ------------------------------------------------------------------ the tripwires

class WriteAttempt(AssertionError):
    """A write while kvmnet was told something bad: the test fails."""


@dataclass
class Tripwires:
    calls: list[str] = field(default_factory=list)
    opened: list[Connection] = field(default_factory=list)

    def hit(self, what: str) -> None:
        self.calls.append(what)
        raise WriteAttempt(f"write call while handling bad input: {what}")

    def wire(self, what: str) -> Callable[..., Any]:
        def tripwire(*_a: Any, **_k: Any) -> Any:
            self.hit(what)
        return tripwire

    def assert_clean(self) -> None:
        assert self.calls == [], f"write calls: {self.calls}"
        for c in self.opened:
            assert c.writes == [], f"libvirt writes on {c.uri}: {c.writes}"


LIBVIRT_WRITES = {
    libvirt.virConnect: ("networkDefineXML", "networkDefineXMLFlags", "networkCreateXML",
                         "networkCreateXMLFlags", "defineXML", "defineXMLFlags", "createXML",
                         "createXMLWithFiles", "interfaceDefineXML", "nwfilterDefineXML",
                         "storagePoolDefineXML"),
    libvirt.virNetwork: ("create", "destroy", "undefine", "setAutostart", "update",
                         "portCreateXML", "setMetadata"),
    libvirt.virDomain: ("attachDevice", "attachDeviceFlags", "detachDevice",
                        "detachDeviceFlags", "updateDeviceFlags", "setMetadata", "create",
                        "createWithFlags", "destroy", "destroyFlags", "undefine", "undefineFlags",
                        "shutdown", "reboot", "setAutostart"),
}

# kvmnet's own doors to the host (patched wherever a module imported them by name)
HOST_WRITERS = (
    ("kvmnet.backend.host", "set_master"),
    ("kvmnet.apply.bridge.transaction", "apply_bridge"),
    ("kvmnet.apply.bridge.transaction", "rollback"),
    ("kvmnet.apply.bridge.transaction", "confirm"),
    ("kvmnet.apply.bridge.migrate", "migrate"),
    ("kvmnet.apply.bridge.undo", "restore"),
    ("kvmnet.apply.bridge.persist", "write"),
    ("kvmnet.apply.bridge.persist", "restore"),
    ("kvmnet.apply.bridge.revert", "revert"),
    ("kvmnet.apply.bridge.watchdog", "spawn"),
    ("kvmnet.apply.bridge.boot", "save"),
    ("kvmnet.apply.bridge.boot", "install_unit"),
    ("kvmnet.apply.bridge.boot", "boot_rollback"),
    ("kvmnet.apply.bridge.store", "write_journal"),
    ("kvmnet.apply.bridge.store", "write_copy"),
    ("kvmnet.apply.bridge.store", "register"),
    ("kvmnet.apply.bridge.store", "clear"),
    ("kvmnet.apply.bridge.store", "end"),
    ("kvmnet.apply.bridge.store", "tx_lock"),
    ("kvmnet.backend.lock", "apply_lock"),
    ("kvmnet.backend.lock", "open_lock"),
    ("kvmnet.backend.files", "write_atomic"),
    ("kvmnet.backend.files", "write_bytes_atomic"),
    ("kvmnet.backend.files", "write_tree"),
    ("kvmnet.backend.files", "make_dirs"),
    ("kvmnet.backend.firewall", "sync"),           # port forwards: nft, iptables-restore
    ("kvmnet.backend.firewall", "install_rules"),
    ("kvmnet.backend.nft", "apply_batch"),         # nft -j -f -
    ("kvmnet.backend.nft", "write"),               # nft, iptables-restore
    ("kvmnet.backend.forward_files", "install"),   # the libvirt network hook
    ("kvmnet.backend.forward_files", "remove"),
)
# host writers that later work may add: patched when they exist
OPTIONAL_HOST_WRITERS: tuple[tuple[str, str], ...] = ()
NETLINK_READS = {"dump", "get", "show"}
OS_WRITES = ("replace", "rename", "renames", "unlink", "remove", "rmdir", "mkdir", "makedirs",
             "symlink", "link", "chmod", "fchmod", "chown", "fchown", "lchown", "truncate",
             "ftruncate", "mkfifo", "mknod", "system", "popen", "fork", "forkpty",
             "posix_spawn", "posix_spawnp", "execv", "execve", "execvp", "execvpe", "execl",
             "execlp", "spawnv", "spawnvp", "spawnl")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@contextmanager
def tripwires(redirect: bool = True) -> Iterator[Tripwires]:
    """While active, any write by kvmnet to libvirt or the host is recorded and raises."""
    import importlib

    t = Tripwires()
    real_open = Connection.open.__func__  # type: ignore[attr-defined]

    def open_conn(cls: type[Connection], uri: str | None = None) -> Connection:
        asked = conn_mod.default_uri(uri)
        if redirect:
            c = Connection(asked, real_open(cls, "test:///default").raw)
        else:
            c = real_open(cls, uri)
        t.opened.append(c)
        return c

    def conn_write(self: Connection, what: str, fn: Callable[[], Any], **_: Any) -> Any:
        self.writes.append(what)
        t.hit(f"Connection.write({what})")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", True)  # imports must not write .pyc here
        mp.setattr(Connection, "open", classmethod(open_conn))
        mp.setattr(Connection, "write", conn_write)
        for cls, names in LIBVIRT_WRITES.items():
            for name in names:
                if hasattr(cls, name):
                    mp.setattr(cls, name, t.wire(f"libvirt {cls.__name__}.{name}"))
        targets = []
        for modname, fname in HOST_WRITERS + OPTIONAL_HOST_WRITERS:
            try:
                mod = importlib.import_module(modname)
            except ImportError:
                continue
            if hasattr(mod, fname):
                targets.append((getattr(mod, fname), f"{modname}.{fname}"))
        from kvmnet.backend.ovsdb import NbSessions

        mp.setattr(NbSessions, "apply", t.wire("OVN northbound write"))
        # `from kvmnet.backend.files import write_bytes_atomic` binds the name elsewhere too
        for mod in [m for n, m in sys.modules.items() if n.startswith("kvmnet") and m]:
            for attr, value in list(vars(mod).items()):
                for fn, label in targets:
                    if value is fn:
                        mp.setattr(mod, attr, t.wire(label))
        _netlink(mp, t)
        mp.setattr(subprocess, "Popen", t.wire("subprocess.Popen"))
        for name in OS_WRITES:
            if hasattr(os, name):
                mp.setattr(os, name, t.wire(f"os.{name}"))
        real_os_open, real_builtin_open = os.open, builtins.open

        def guarded_os_open(path: Any, flags: int, *a: Any, **k: Any) -> int:
            if flags & _WRITE_FLAGS:
                t.hit(f"os.open({path!r}, write flags)")
            return real_os_open(path, flags, *a, **k)

        def guarded_open(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
            if isinstance(file, int) or not any(c in mode for c in "wax+"):
                return real_builtin_open(file, mode, *a, **k)
            t.hit(f"open({file!r}, {mode!r})")

        mp.setattr(os, "open", guarded_os_open)
        mp.setattr(builtins, "open", guarded_open)
        yield t


def _netlink(mp: pytest.MonkeyPatch, t: Tripwires) -> None:
    from pyroute2.iproute.linux import RTNL_API

    for name in ("link", "addr", "route", "rule", "neigh", "tc", "brport", "vlan_filter", "fdb"):
        orig = RTNL_API.__dict__.get(name)
        if orig is None:
            continue

        def guarded(self: Any, command: str = "dump", *a: Any, _orig: Any = orig,
                    _name: str = name, **k: Any) -> Any:
            if command not in NETLINK_READS:
                t.hit(f"netlink {_name} {command}")
            return _orig(self, command, *a, **k)

        mp.setattr(RTNL_API, name, guarded)


def run(capsys: pytest.CaptureFixture[str], argv: list[str], redirect: bool = True
        ) -> tuple[int, str, str, Tripwires]:
    with tripwires(redirect) as t:
        rc = main(argv)
    cap = capsys.readouterr()
    for c in t.opened:
        c.close()
    return rc, cap.out, cap.err, t


def assert_refused(rc: int, out: str, err: str, t: Tripwires) -> None:
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in out + err, err
    assert "WriteAttempt" not in out + err, err
    t.assert_clean()


COMMANDS = {"plan": ["plan"], "apply": ["apply", "--yes"]}
URIS = {"test": "test:///default", "system": "qemu:///system"}


# ------------------------------------------------------------------ the catalogue

def test_the_catalogue_is_big() -> None:
    assert len(CASES) >= 100


@pytest.mark.parametrize("uri", URIS.values(), ids=list(URIS))
@pytest.mark.parametrize("cmd", COMMANDS.values(), ids=list(COMMANDS))
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_catalogue_changes_nothing(path: Path, cmd: list[str], uri: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err, t = run(capsys, [*cmd, str(path), "-c", uri])
    assert_refused(rc, out, err, t)
    for line, col, text in expectations(path):
        where = f"{path}:{line}:{col}: error: "
        assert any(ln.startswith(where) and text in ln for ln in err.splitlines()), (
            f"expected {where}{text}\n got:\n{err}")
    assert re.search(r"^\d+ error\(s\); nothing was changed\.$", err, re.M), err
    # a bad file is refused before libvirt is even asked
    assert t.opened == [], "a connection was opened for a spec that does not load"


# ------------------------------------------------------------------ generated bad files

def _junk(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, the message's FILE:... prefix and words)."""
    cases: dict[str, tuple[Path, str]] = {}
    d = tmp / "a-directory.yaml"
    d.mkdir()
    cases["directory"] = (d, f"{d}: error: a folder with no spec in it")
    cases["missing"] = (tmp / "nope.yaml", f"{tmp / 'nope.yaml'}: error: no such file")
    f = tmp / "binary.yaml"
    f.write_bytes(bytes(range(256)) * 4)
    cases["binary"] = (f, f"{f}:1:1: error: binary data (NUL bytes)")
    f = tmp / "big.yaml"
    with f.open("w") as fh:
        fh.write("networks:\n" + ("  # " + "x" * 95 + "\n") * (10 * 1024 * 1024 // 100))
    cases["10MB"] = (f, f"{f}: error: file is 10.0 MiB, larger than 4 MiB")
    f = tmp / "deep.yaml"
    f.write_text("x: " + "[" * 100_000 + "]" * 100_000 + "\n")
    cases["deep"] = (f, "YAML syntax: exceeded maximum nesting depth")
    f = tmp / "utf16.yaml"
    f.write_bytes("networks: {}\n".encode("utf-16"))
    cases["utf16"] = (f, f"{f}:1:1: error: UTF-16 text: save the file as UTF-8")
    f = tmp / "latin1.yaml"
    f.write_bytes("networks:\n  caf\u00e9: {}\n".encode("latin-1"))
    cases["latin1"] = (f, f"{f}:2:6: error: not UTF-8 text (byte 0xe9)")
    f = tmp / "alias-bomb.yaml"
    f.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
        for i in range(8)) + "networks: {}\n")
    cases["alias-bomb"] = (f, "YAML aliases (*name) in this file expand to more than")
    f = tmp / "two-docs.yaml"
    f.write_text("networks: {}\n---\nnetworks: {}\n")
    cases["two-documents"] = (f, f"{f}:2:1: error: YAML syntax")
    return cases


GENERATED = ["directory", "missing", "binary", "10MB", "deep", "utf16", "latin1",
             "alias-bomb", "two-documents"]


@pytest.mark.parametrize("cmd", COMMANDS.values(), ids=list(COMMANDS))
@pytest.mark.parametrize("case", GENERATED)
def test_generated_bad_files_change_nothing(case: str, cmd: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path, message = _junk(tmp_path)[case]
    rc, out, err, t = run(capsys, [*cmd, str(path), "-c", "qemu:///system"])
    assert_refused(rc, out, err, t)
    assert message in err, err
    assert t.opened == []


def test_dev_zero_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err, t = run(capsys, ["apply", "--yes", "/dev/zero", "-c", "qemu:///system"])
    assert_refused(rc, out, err, t)
    assert "/dev/zero: error: input is larger than 4 MiB" in err


# ------------------------------------------------------------------ refused by the live state

@pytest.fixture
def held() -> Iterator[libvirt.virConnect]:
    """Keeps test:///default's state alive across the connections the CLI opens."""
    libvirt.registerErrorHandler(lambda *_: None, None)
    c = libvirt.open("test:///default")
    yield c
    c.close()


def _snapshot(c: libvirt.virConnect) -> dict[str, str]:
    nets = {f"net {n.name()}": n.XMLDesc(0) + str(n.isActive()) + str(n.autostart())
            for n in c.listAllNetworks()}
    doms = {f"dom {d.name()}": d.XMLDesc(0) for d in c.listAllDomains()}
    return {**nets, **doms}


LIVE_CASES = {
    # test:///default has an unmanaged NAT network 'default' and a running domain 'test'
    # whose NIC is aa:bb:cc:dd:ee:ff on it.
    "unmanaged-name-taken": (
        "networks:\n  default:\n    mode: nat\n    ipv4: {address: 192.168.122.1/24}\n", (),
        ":2:3: error: networks.default: network default already exists on"),
    "outside-scope": (GOOD, ("--scope", "other-*"),
                      ":2:3: error: networks.kvt-zw-net: kvt-zw-net is outside --scope"),
    "mac-of-another-domain": (
        GOOD + "guests:\n  web1:\n    interfaces:\n"
               "      - {network: kvt-zw-net, mac: 'aa:bb:cc:dd:ee:ff'}\n", (),
        ":8:9: error: guests.web1.interfaces.0: MAC aa:bb:cc:dd:ee:ff is already used by "
        "domain test"),
}


@pytest.mark.parametrize("cmd", COMMANDS.values(), ids=list(COMMANDS))
@pytest.mark.parametrize("case", list(LIVE_CASES))
def test_refused_by_the_live_state(case: str, cmd: list[str], tmp_path: Path,
                                   held: libvirt.virConnect,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    text, extra, message = LIVE_CASES[case]
    f = tmp_path / "spec.yaml"
    f.write_text(text)
    before = _snapshot(held)
    rc, out, err, t = run(capsys, [*cmd, str(f), "-c", "test:///default", *extra])
    assert_refused(rc, out, err, t)
    assert f"{f}{message}" in err, err
    assert len(t.opened) == 1  # it had to look at the host for these
    assert _snapshot(held) == before


def test_removal_with_guests_needs_allow_destroy(tmp_path: Path, held: libvirt.virConnect,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A plan that would cut a running guest off is refused as a whole: no write."""
    f = tmp_path / "adopt.yaml"
    f.write_text("owner: zw\nnetworks:\n  default:\n    adopt: true\n    mode: nat\n"
                 "    bridge: virbr0\n"
                 "    ipv4: {address: 192.168.122.1/24, dhcp: 192.168.122.2-192.168.122.254}\n")
    assert main(["apply", "--yes", str(f), "-c", "test:///default"]) == 0  # (writes: allowed)
    capsys.readouterr()
    empty = tmp_path / "empty.yaml"
    empty.write_text("owner: zw\n" + GOOD)   # the same owner: its network is this spec's
    before = _snapshot(held)
    for cmd in COMMANDS.values():
        rc, out, err, t = run(capsys, [*cmd, str(empty), "-c", "test:///default"])
        if cmd[0] == "plan":
            # plan shows it, marked, and exits 3: apply would refuse it
            assert rc == 3 and "[needs --allow-destroy]" in out
            t.assert_clean()
            continue
        assert_refused(rc, out, err, t)
        assert "refusing to remove networks with guests attached" in err
        assert "default" in err and "--allow-destroy" in err
    assert _snapshot(held) == before


def test_apply_without_yes_on_a_pipe_changes_nothing(tmp_path: Path, held: libvirt.virConnect,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "spec.yaml"
    f.write_text(GOOD)
    before = _snapshot(held)
    rc, out, err, t = run(capsys, ["apply", str(f), "-c", "test:///default"])
    assert_refused(rc, out, err, t)
    assert "stdin is not a terminal; pass --yes" in err
    assert _snapshot(held) == before


# ------------------------------------------------------------------ bad command lines

BAD_USAGE = {
    "no-file": (["{cmd}"], "Missing argument 'FILE'"),
    "unknown-option": (["{cmd}", "{file}", "--frob"], "No such option: --frob"),
    "extra-argument": (["{cmd}", "{file}", "extra.yaml"], "Got unexpected extra argument"),
    "connect-without-uri": (["{cmd}", "{file}", "-c"], "Option '-c' requires an argument"),
    "scope-without-glob": (["{cmd}", "{file}", "--scope"],
                           "Option '--scope' requires an argument"),
    "json-takes-no-value": (["{cmd}", "{file}", "--json=yes"],
                            "Option '--json' does not take a value"),
}
APPLY_ONLY_USAGE = {
    "lock-wait-word": (["apply", "{file}", "--lock-wait", "long"],
                       "Invalid value for '--lock-wait'"),
    "confirm-timeout-negative": (["apply", "{file}", "--confirm-timeout", "-1"],
                                 "Invalid value for '--confirm-timeout'"),
    "plan-option-on-apply": (["apply", "{file}", "--detailed-exitcode"],
                             "No such option: --detailed-exitcode"),
}


@pytest.mark.parametrize("cmd", ["plan", "apply"])
@pytest.mark.parametrize("case", list(BAD_USAGE))
def test_bad_usage_changes_nothing(case: str, cmd: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "spec.yaml"
    f.write_text(GOOD)
    argv, message = BAD_USAGE[case]
    argv = [a.format(cmd=cmd, file=f) for a in argv] + (["--yes"] if cmd == "apply" and
                                                         case != "connect-without-uri" and
                                                         case != "scope-without-glob" else [])
    rc, out, err, t = run(capsys, argv)
    assert_refused(rc, out, err, t)
    assert f"kvmnet: error: {message}" in err, err
    assert "Try 'kvmnet --help'." in err
    assert t.opened == []


@pytest.mark.parametrize("case", list(APPLY_ONLY_USAGE))
def test_bad_apply_usage_changes_nothing(case: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "spec.yaml"
    f.write_text(GOOD)
    argv, message = APPLY_ONLY_USAGE[case]
    rc, out, err, t = run(capsys, [a.format(file=f) for a in argv] + ["--yes"])
    assert_refused(rc, out, err, t)
    assert f"kvmnet: error: {message}" in err, err
    assert t.opened == []


# ------------------------------------------------------------------ bad -c URIs

BAD_URIS: dict[str, tuple[str, str | tuple[str, ...]]] = {
    # libvirt hands a URI it has no driver for to libvirtd, if one runs
    "unknown-scheme": ("bogus:///x", ("unknown URI", "libvirtd is not running")),
    "no-driver": ("xen:///system", "cannot connect to xen:///system"),
    "socket-missing": ("qemu+unix:///system?socket=/nonexistent/kvt-sock",
                       "libvirtd is not running"),
    "test-file-missing": ("test:///nonexistent/kvt-zw.xml", "cannot connect to"),
    "garbage": ("::::", "cannot connect to ::::"),
    "spaces": ("qemu :///system", "cannot connect to qemu :///system"),
    "tls-no-certificates": ("qemu+tls://127.0.0.1:1/system", "cannot connect to"),
}


@pytest.mark.parametrize("via_env", [False, True], ids=["-c", "LIBVIRT_DEFAULT_URI"])
@pytest.mark.parametrize("cmd", COMMANDS.values(), ids=list(COMMANDS))
@pytest.mark.parametrize("case", list(BAD_URIS))
def test_bad_uri_changes_nothing(case: str, cmd: list[str], via_env: bool, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    uri, words = BAD_URIS[case]
    f = tmp_path / "spec.yaml"
    f.write_text(GOOD)
    if via_env:
        monkeypatch.setenv("LIBVIRT_DEFAULT_URI", uri)
        argv = [*cmd, str(f)]
    else:
        argv = [*cmd, str(f), "-c", uri]
    rc, out, err, t = run(capsys, argv, redirect=False)
    assert_refused(rc, out, err, t)
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1, err
    assert errors[0].startswith("kvmnet: error: cannot connect to ") and uri in errors[0], err
    assert any(w in errors[0] for w in ((words,) if isinstance(words, str) else words)), err


def test_bad_spec_wins_over_bad_uri(capsys: pytest.CaptureFixture[str]) -> None:
    """Both wrong: the file is reported (with its positions); libvirt is not asked."""
    path = BAD / "seed_as_written.yaml"
    rc, out, err, t = run(capsys, ["apply", "--yes", str(path), "-c", "bogus:///x"],
                          redirect=False)
    assert_refused(rc, out, err, t)
    assert f"{path}:" in err and "bogus" not in err
    assert t.opened == []


# ------------------------------------------------------------------ the seam itself

def test_the_tripwires_fire(tmp_path: Path, held: libvirt.virConnect,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """A good spec does write: the tripwires must see it (else the tests above prove
    nothing)."""
    f = tmp_path / "spec.yaml"
    f.write_text(GOOD)
    with pytest.raises(WriteAttempt):
        with tripwires() as t:
            main(["apply", "--yes", str(f), "-c", "test:///default"])
    assert t.calls and t.calls[0].startswith("Connection.write(define network kvt-zw-net")
    capsys.readouterr()
    with tripwires() as t:
        for call in (lambda: subprocess.run(["true"], check=False),
                     lambda: os.replace(str(f), str(f) + ".x"),
                     lambda: open(f, "w"),  # noqa: SIM115
                     lambda: kvmnet.backend.host.set_master("a", "b")):
            with pytest.raises(WriteAttempt):
                call()
    assert len(t.calls) == 4
    assert f.exists()


def test_the_netlink_tripwire_lets_reads_through() -> None:
    from pyroute2 import IPRoute

    with tripwires() as t:
        with IPRoute() as ipr:
            assert list(ipr.get_links())
            with pytest.raises(WriteAttempt):
                ipr.link("add", ifname="kvt-zw-never", kind="dummy")
    assert t.calls == ["netlink link add"]
