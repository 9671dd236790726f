"""What SECURITY.md promises, held by tests (issue 9, item 6).

- No shell: no `shell=True`, os.system, os.popen, ... anywhere in src/; every
  subprocess call takes an argument list.
- Values from the spec never reach a shell, or XML / nft / iptables / dnsmasq text
  unescaped: hostile values are refused when the spec loads (with FILE:LINE:COL),
  what free text is allowed is escaped by lxml, the firewall text is built only
  from names, addresses and numbers (also when read back from its state file), and
  the generated hook script quotes every path.
- Files are written atomically, with the right mode whatever the umask, never
  through a symlink or a folder another user can change (kvmnet.backend.files); so are the
  apply lock, the host transaction lock and persist's host config files.
- Not root against qemu:///system: a clear message before anything changes (needs
  the lab libvirtd, tests/lab).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from lxml import etree

from kvmnet.apply.bridge import persist
from kvmnet.backend import files as fsutil
from kvmnet.backend import lock as lock_mod
from kvmnet.errors import LiveError, LockError, SpecError, UnsafePathError
from kvmnet.model.spec import Guest, GuestNic, Network, Spec
from kvmnet.render.interface import interface_element
from kvmnet.render.network import network_xml
from kvmnet.spec.load import load_text

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "kvmnet"
KVMNET = Path(sys.executable).parent / "kvmnet"
NOBODY = 65534


# ------------------------------------------------------------------ no shell

def _sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 40
    return files


def test_grep_finds_no_shell_true() -> None:
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _sources()
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if re.search(r"shell\s*=\s*True", line)]
    assert hits == []


FORBIDDEN_CALLS = {
    ("os", "system"), ("os", "popen"), ("os", "execl"), ("os", "execlp"), ("os", "execle"),
    ("os", "execv"), ("os", "execvp"), ("os", "execve"), ("os", "execvpe"), ("os", "spawnl"),
    ("os", "spawnv"), ("os", "spawnlp"), ("os", "spawnvp"), ("os", "posix_spawn"),
    ("os", "posix_spawnp"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
    ("pty", "spawn"), ("asyncio", "create_subprocess_shell"),
}
SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output"}


def _calls(tree: ast.AST) -> Iterator[tuple[str, str, ast.Call]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name):
            yield node.func.value.id, node.func.attr, node


def _is_text(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _is_text(node.left) or _is_text(node.right)
    return False


def test_every_subprocess_call_takes_an_argument_list() -> None:
    """AST, not grep: no shell= at all (not even shell=False spelt out, so a later
    shell=flag cannot slip in), no forbidden call, and the command is never a string."""
    seen = []
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        names: dict[str, ast.AST] = {}
        for node in ast.walk(tree):  # simple `x = ...` assignments, per file
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name):
                names.setdefault(node.targets[0].id, node.value)
        for mod, fn, call in _calls(tree):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if (mod, fn) in FORBIDDEN_CALLS:
                problems.append(f"{where}: {mod}.{fn}")
            if any(k.arg == "shell" for k in call.keywords):
                problems.append(f"{where}: shell= keyword")
            if mod == "subprocess" and fn in SUBPROCESS:
                seen.append(where)
                arg = call.args[0] if call.args else next(
                    (k.value for k in call.keywords if k.arg == "args"), None)
                assert arg is not None, where
                if isinstance(arg, ast.Name) and arg.id in names:
                    arg = names[arg.id]
                if _is_text(arg):
                    problems.append(f"{where}: the command is a string")
                elif not isinstance(arg, ast.List | ast.Tuple | ast.Name | ast.ListComp |
                                    ast.Call | ast.IfExp):
                    problems.append(f"{where}: cannot tell what the command is")
    assert problems == []
    assert len(seen) >= 4, seen  # watchdog, firewall, doctor, graph (dot)


def test_no_module_imports_os_system_style_helpers() -> None:
    for path in _sources():
        text = path.read_text()
        for bad in ("from os import system", "from os import popen", "import commands",
                    "from subprocess import getoutput", "shlex.join("):
            assert bad not in text, f"{path}: {bad}"


# ------------------------------------------------------------------ hostile values

HOSTILE = ["<x/>", "a&b", "a\"b", "a'b", "]]>", "a;reboot", "$(reboot)", "`id`", "a b",
           "../../etc/passwd", "a\nb", "a\rb", "a\x00b", "a\tb", "a\u202eb", "a\u2028b",
           "x\" ; flush ruleset ; \"", "-rf", "a,ignore", "a/b", "a#b"]
# (where the value goes, YAML template with {v}); the value is written as a YAML
# double-quoted string, so control characters arrive as themselves
FIELDS = {
    "network name": "networks:\n  {v}: {{mode: isolated}}\n",
    "guest name": "guests:\n  {v}: {{}}\n",
    "bridge": "networks:\n  n: {{mode: isolated, bridge: {v}}}\n",
    "host bridge": "host:\n  bridges:\n    {v}: {{}}\n",
    "host bridge port": "host:\n  bridges:\n    br0: {{ports: [{v}]}}\n",
    "bond name": "host:\n  bonds:\n    {v}: {{ports: [eno1]}}\n",
    "bond port": "host:\n  bonds:\n    bond0: {{ports: [{v}]}}\n",
    "bond mode": "host:\n  bonds:\n    bond0: {{ports: [eno1], mode: {v}}}\n",
    "bond primary": "host:\n  bonds:\n    bond0: {{ports: [eno1], primary: {v}}}\n",
    "bond lacp rate": ("host:\n  bonds:\n    bond0: {{ports: [eno1], mode: 802.3ad, "
                       "lacp_rate: {v}}}\n"),
    "bond hash policy": ("host:\n  bonds:\n    bond0: {{ports: [eno1], mode: 802.3ad, "
                         "xmit_hash_policy: {v}}}\n"),
    "bond miimon": "host:\n  bonds:\n    bond0: {{ports: [eno1], miimon: {v}}}\n",
    "vlan name": "host:\n  vlans:\n    {v}: {{link: eno1, id: 100}}\n",
    "vlan link": "host:\n  vlans:\n    v100: {{link: {v}, id: 100}}\n",
    "vlan id": "host:\n  vlans:\n    v100: {{link: eno1, id: {v}}}\n",
    "domain": "networks:\n  n: {{mode: nat, domain: {v}}}\n",
    "dhcp host name": ("networks:\n  n:\n    ipv4:\n      address: 10.1.0.1/24\n"
                       "      hosts: [{{mac: '52:54:00:00:00:01', ip: 10.1.0.5, name: {v}}}]\n"),
    "dns host name": ("networks:\n  n:\n    ipv4: {{address: 10.1.0.1/24}}\n"
                      "    dns: {{hosts: [{{ip: 10.1.0.6, names: [{v}]}}]}}\n"),
    "srv target": ("networks:\n  n:\n    dns: {{srv: [{{service: ldap, protocol: tcp, "
                   "target: {v}}}]}}\n"),
    "txt name": "networks:\n  n:\n    dns: {{txt: [{{name: {v}, value: x}}]}}\n",
    "forwarder domain": "networks:\n  n:\n    dns: {{forwarders: [{{domain: {v}}}]}}\n",
    "forward guest": ("networks:\n  n:\n    forwards: [{{proto: tcp, host_port: 2222, "
                      "guest: {v}}}]\n"),
    "nic network": "guests:\n  g: {{interfaces: [{{network: {v}}}]}}\n",
    "mac": "guests:\n  g: {{interfaces: [{{network: n, mac: {v}}}]}}\n",
    "dhcp id": ("networks:\n  n:\n    ipv6:\n      address: fd00::1/64\n"
                "      hosts: [{{id: {v}, ip: 'fd00::5'}}]\n"),
    "ip": "guests:\n  g: {{interfaces: [{{network: n, ipv4: {v}}}]}}\n",
}
# free text: printable hostile characters are allowed (and escaped); control ones not
TEXT_FIELDS = {
    "txt value": "networks:\n  n:\n    dns: {{txt: [{{name: t, value: {v}}}]}}\n",
    "tftp": "networks:\n  n:\n    ipv4: {{address: 10.1.0.1/24, tftp: {v}}}\n",
    "bootp file": ("networks:\n  n:\n    ipv4: {{address: 10.1.0.1/24, dhcp: 10.1.0.10-10.1.0.20,"
                   " bootp: {{file: {v}}}}}\n"),
    "portgroup": "guests:\n  g: {{interfaces: [{{network: n, portgroup: {v}}}]}}\n",
}


def _yaml_str(v: str) -> str:
    return '"' + v.encode("unicode_escape").decode().replace('"', '\\"') + '"'


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
@pytest.mark.parametrize("field", list(FIELDS))
def test_hostile_values_are_refused_with_a_position(field: str, value: str) -> None:
    text = FIELDS[field].format(v=_yaml_str(value))
    with pytest.raises(SpecError) as e:
        load_text(text, "hostile.yaml")
    probs = e.value.problems
    assert probs and all(p.line >= 1 and p.col >= 1 for p in probs), probs
    # the message shows the value escaped: it cannot forge an output line
    assert all("\n" not in p.message and "\r" not in p.message for p in probs)


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v) for v in HOSTILE])
@pytest.mark.parametrize("field", list(TEXT_FIELDS))
def test_free_text_is_one_line_and_escaped(field: str, value: str) -> None:
    text = TEXT_FIELDS[field].format(v=_yaml_str(value))
    if any(ord(c) < 32 or c in "\u202e\u2028" for c in value):
        with pytest.raises(SpecError) as e:
            load_text(text, "hostile.yaml")
        assert e.value.problems[0].line >= 1
        return
    spec, _ = load_text(text, "hostile.yaml")
    if field == "portgroup":
        spec = spec.model_copy(update={"networks": {"n": Network(mode="isolated")}})
        xml = etree.tostring(interface_element(spec, "g", 0), encoding="unicode")
        root = etree.fromstring(xml)
        assert root.find("source").get("portgroup") == value
        return
    xml = network_xml(spec, "n")
    root = etree.fromstring(xml.encode())  # well-formed, whatever the value held
    found = [v for el in root.iter() for v in [*el.attrib.values(), el.text or ""]]
    assert value in found, xml
    benign = network_xml(load_text(TEXT_FIELDS[field].format(v='"x"'))[0], "n")
    assert len(list(root.iter())) == len(list(etree.fromstring(benign.encode()).iter()))


@pytest.mark.parametrize("value", [v for v in HOSTILE if not any(
    ord(c) < 32 for c in v)], ids=repr)
def test_render_escapes_even_unvalidated_values(value: str) -> None:
    """Defence in depth: a Spec built without validation (model_construct) still gives
    well-formed XML holding the value as data, never as markup."""
    net = Network.model_construct(**{**Network().__dict__, "mode": "nat", "domain": value})
    spec = Spec.model_construct(host=Spec().host, hosts={}, networks={value: net},
                                guests={"g": Guest.model_construct(interfaces=[
                                    GuestNic.model_construct(**{**GuestNic(network="x").__dict__,
                                                                "network": value})])},
                                ovn=None)
    root = etree.fromstring(network_xml(spec, value).encode())
    assert root.findtext("name") == value
    assert root.find("domain").get("name") == value
    assert [el.tag for el in root.iter()] == ["network", "name", "metadata",
                                              "{https://kvmnet.dev/xmlns/1}managed",
                                              "forward", "domain"]
    nic = interface_element(spec, "g", 0)
    assert etree.fromstring(etree.tostring(nic)).find("source").get("network") == value


# ------------------------------------------------------------------ the terminal

# What libvirt lets another admin name a network: XML allows C1 controls (CSI is
# U+009B) and bidi overrides, and kvmnet prints live names it never checked.
LIVE_HOSTILE = "e\u009b2J[bold]\u202ex"


@pytest.mark.parametrize("as_json", [False, True], ids=["tables", "json"])
def test_live_names_cannot_drive_the_terminal(tmp_path: Path, as_json: bool) -> None:
    node = tmp_path / "node.xml"
    node.write_text("<node><network><name>e&#x9b;2J[bold]&#x202e;x</name>"
                    "<bridge name='virbr9'/><forward mode='nat'/>"
                    "<ip address='192.168.99.1' netmask='255.255.255.0'/></network></node>")
    r = subprocess.run([str(KVMNET), "show", "-c", f"test://{node}",
                        *(["--json"] if as_json else [])], capture_output=True, text=True,
                       timeout=60, check=False, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", r.stdout + r.stderr)
    if as_json:  # the same name, spelled with JSON escapes
        assert json.loads(r.stdout)["networks"][0]["name"] == LIVE_HOSTILE
    else:        # shown as escapes, brackets as written
        assert "e\\x9b2J[bold]\\u202ex" in r.stdout


def test_dnsmasq_option_injection_is_refused() -> None:
    """The bug this suite found: a line break in a domain (or tftp root, DNS name, ...)
    went through libvirt into dnsmasq's config file, where `dhcp-script=PROGRAM` runs a
    program as root. Now refused where it is written."""
    text = ('networks:\n  n:\n    domain: "example.com\\ndhcp-script=/tmp/x"\n'
            '    ipv4: {address: 10.1.0.1/24, tftp: "/srv\\nlog-facility=/etc/x"}\n')
    with pytest.raises(SpecError) as e:
        load_text(text, "f.yaml")
    assert [(p.line, p.col) for p in e.value.problems] == [(3, 13), (4, 40)]


# ------------------------------------------------------------------ nft / iptables text

FWD_SPEC = """\
networks:
  nat1:
    mode: nat
    ipv4: {address: 10.1.0.1/24, dhcp: 10.1.0.10-10.1.0.200}
    ipv6: {address: 'fd00:1::1/64'}
    forwards:
      - {proto: tcp, host_port: 2222, guest: web1, guest_port: 22}
      - {proto: udp, host_port: 5000-5002, address: 10.1.0.7, guest_port: 6000-6002,
         sources: [192.0.2.0/24, 198.51.100.0/25], listen: 203.0.113.5}
      - {proto: tcp, host_port: 8080, address: 'fd00:1::8', guest_port: 80}
guests:
  web1:
    interfaces: [{network: nat1, ipv4: 10.1.0.5}]
"""
# what a rule may contain: nft keywords, names, addresses, numbers, braces, the
# comment "kvmnet:HASH NET PROTO/PORTS"
NFT_LINE = re.compile(r'^[*:]?[A-Za-z0-9_.:/\-{}\[\]!=,;<> \t]*'
                      r'( (comment|--comment) "[A-Za-z0-9:._/ -]*"( -j ACCEPT)?)?$')


# what a string in kvmnet's nft JSON may be: a key, a keyword, a name, an address or
# block, or the comment "kvmnet:HASH NET PROTO/PORTS"
NFT_JSON_STRING = re.compile(r"^[A-Za-z0-9_.:/ -]*$")


def _strings(v: object) -> Iterator[str]:
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from _strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)
    else:
        assert v is None or isinstance(v, int), v


def test_nft_json_and_iptables_text_hold_only_names_addresses_and_numbers() -> None:
    fw = pytest.importorskip("kvmnet.render.firewall")
    import json

    spec, _ = load_text(FWD_SPEC)
    files = fw.render_firewall(spec)
    assert files, "no firewall rules rendered"
    nft = [n for n in files if n.endswith((".nft.json", "accept-nftables.json"))]
    assert len(nft) == 2, files.keys()
    for name in nft:
        strings = list(_strings(json.loads(files[name])))
        assert any(s.startswith("kvmnet:") for s in strings), name
        for s in strings:
            assert s in ("==", "!=") or NFT_JSON_STRING.match(s), f"{name}: {s!r}"
    for line in files["firewall/accept-iptables.rules"].splitlines():
        if line.startswith("#"):
            continue
        assert NFT_LINE.match(line), line
        assert line.count('"') in (0, 2), line


@pytest.mark.parametrize("field, value", [
    ("network", 'nat1" ; flush ruleset ; "'), ("network", "a\nb"), ("guest", "x;y"),
    ("proto", "tcp dport 1 accept"), ("target", "10.1.0.5 accept"), ("target", "10.1.0.5\n"),
    ("subnet", "10.1.0.0/24 }"), ("listen", "1.2.3.4; flush"), ("sources", ["0.0.0.0/0 }"]),
    ("host_ports", [0, 70000]), ("target", "fe80::1%x;flush ruleset"),
    ("listen", "fe80::1%a\nflush ruleset"), ("sources", ["fe80::%x}/64"]),
])
def test_the_forwards_state_file_is_checked_before_it_becomes_rules(field: str,
                                                                    value: object) -> None:
    """The libvirt hook turns ROOT/var/lib/kvmnet/forwards.json into nft JSON and
    iptables-restore text: a value there that is not a name, an address or a port is
    refused."""
    fw = pytest.importorskip("kvmnet.render.firewall")
    state = pytest.importorskip("kvmnet.model.forward")
    spec, _ = load_text(FWD_SPEC)
    good = state.state_json(fw.resolve(spec))
    assert state.parse_state(good) == fw.resolve(spec)
    import json

    data = json.loads(good)
    data["forwards"][0][field] = value
    with pytest.raises(ValueError):
        state.parse_state(json.dumps(data))


@pytest.mark.parametrize("field, value", [
    ("network", 'nat1" ; flush ruleset ; "'), ("guest", "x;y"), ("proto", "tcp dport 1 accept"),
    ("target", "10.1.0.5 accept"), ("target", "010.1.0.5"), ("subnet", "10.1.0.0/24 }"),
    ("subnet", "10.1.0.1/24"), ("listen", "1.2.3.4; flush"), ("sources", ("0.0.0.0/0 }",)),
    ("sources", ["10.0.0.0/8"]), ("host_ports", (0, 70000)), ("guest_ports", (22, "22")),
    ("target", "fd00:1::8%\n$(id)"), ("subnet", "fd00:1::%x/64"),
])
def test_a_forward_with_a_hostile_value_cannot_be_made(field: str, value: object) -> None:
    """Every nft JSON object and iptables-restore line is built from a Fwd's fields:
    a Fwd holding anything but a name, an address, a block or a port cannot exist."""
    fw = pytest.importorskip("kvmnet.model.forward")
    good = fw.Fwd("nat1", "tcp", (2222, 2222), "10.1.0.5", (22, 22), "10.1.0.0/24",
                  "203.0.113.5", ("192.0.2.0/24",), "web1")
    with pytest.raises(ValueError):
        fw.Fwd(**{**good.__dict__, field: value})


def test_the_hook_script_quotes_every_path(tmp_path: Path) -> None:
    hook = pytest.importorskip("kvmnet.backend.forward_files")
    root = tmp_path / "a b'$(touch pwned)`id`\"x"
    root.mkdir()
    text = hook.hook_text(root, python="/opt/py thon/$(x)/python3")
    values = {}
    for line in text.splitlines():
        m = re.match(r"^(PY|STATE|LOG)=(.*)$", line)
        if m:
            values[m[1]] = shlex.split(m[2])
    assert values["PY"] == ["/opt/py thon/$(x)/python3"]
    assert values["STATE"] == [str(root.resolve() / "var/lib/kvmnet/forwards.json")]
    # and sh runs it without executing anything from the path
    script = tmp_path / "hook.sh"
    script.write_text(text)
    r = subprocess.run(["sh", str(script), "net", "started", "begin", "-"], input="",
                       capture_output=True, text=True, cwd=tmp_path, timeout=30, check=False)
    assert r.returncode == 0
    assert not (tmp_path / "pwned").exists() and not (root / "pwned").exists()


# ------------------------------------------------------------------ files

@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o000, 0o077, 0o022])
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755])
def test_mode_is_exact_whatever_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    f = tmp_path / "etc" / "x.conf"
    with umask(mask):
        fsutil.write_atomic(f, "x\n", mode)
        fsutil.write_atomic(f, "y\n", mode)  # and when it replaces a file
    assert stat.S_IMODE(f.stat().st_mode) == mode
    assert f.stat().st_uid == os.geteuid()
    assert sorted(p.name for p in f.parent.iterdir()) == ["x.conf"]  # no temp file left


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    f = tmp_path / "x.conf"
    fsutil.write_atomic(f, "old\n")

    def boom(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(LiveError, match=f"cannot write {f}: No space left on device"):
        fsutil.write_atomic(f, "new\n")
    assert f.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.conf"]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file an attacker wants root to overwrite (stands for /etc/shadow)."""
    v = tmp_path / "victim"
    v.write_text("secret\n")
    v.chmod(0o600)
    return v


def test_a_symlinked_target_is_refused(tmp_path: Path, victim: Path) -> None:
    d = tmp_path / "etc"
    d.mkdir()
    (d / "x.conf").symlink_to(victim)
    for write in (lambda: fsutil.write_atomic(d / "x.conf", "pwned\n"),
                  lambda: fsutil.write_atomic(d / "x.conf", "pwned\n", backup=True),
                  lambda: fsutil.write_bytes_atomic(d / "x.conf", b"pwned\n", 0o644)):
        with pytest.raises(UnsafePathError, match="is a symlink"):
            write()
    assert victim.read_text() == "secret\n"
    assert (d / "x.conf").is_symlink()


def test_a_folder_another_user_owns_is_refused(tmp_path: Path, victim: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a folder to another user")
    d = tmp_path / "users-dir"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match=f"owned by uid {NOBODY}"):
        fsutil.write_atomic(d / "x.conf", "x\n")
    # ... and a symlink such a user could plant on the way
    link = tmp_path / "etc"
    link.symlink_to(victim.parent)
    os.lchown(link, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match="symlink owned by uid"):
        fsutil.write_atomic(link / "victim", "pwned\n")
    assert victim.read_text() == "secret\n"
    assert list(d.iterdir()) == []


def test_world_writable_folders_only_when_sticky(tmp_path: Path) -> None:
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o777)
    with pytest.raises(UnsafePathError, match="writable by every user"):
        fsutil.write_atomic(d / "x", "x\n")
    d.chmod(0o1777)  # like /tmp: others cannot replace what is ours
    fsutil.write_atomic(d / "x", "x\n")
    assert (d / "x").read_text() == "x\n"


def test_root_owned_symlinks_on_the_way_are_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "etc").symlink_to(real)  # (ours: we made it)
    fsutil.write_atomic(tmp_path / "etc" / "x", "x\n")
    assert (real / "x").read_text() == "x\n"


def test_write_tree_stays_inside_and_never_follows_a_link(tmp_path: Path,
                                                          victim: Path) -> None:
    out = tmp_path / "out"
    (out / "networks").mkdir(parents=True)
    (out / "networks" / "n.xml").symlink_to(victim)
    with pytest.raises(UnsafePathError):
        fsutil.write_tree(out, {"networks/n.xml": "<network/>"})
    for rel in ("../escape", "a/../../escape", "/etc/passwd"):
        with pytest.raises(UnsafePathError, match="outside"):
            fsutil.write_tree(out, {rel: "x"})
    assert victim.read_text() == "secret\n"
    assert not (tmp_path / "escape").exists()


def test_write_tree_checks_every_folder_once(tmp_path: Path) -> None:
    """Folders are checked once each (not for every file), all before the first file is
    written, so an unsafe one later in the tree is refused and nothing is written."""
    out = tmp_path / "out"
    files = {f"networks/n{i}.xml": f"<network>{i}</network>\n" for i in range(5)}
    files["host/netplan/etc/netplan/90-kvmnet.yaml"] = "network: {}\n"
    fsutil.write_tree(out, files)
    for rel, text in files.items():
        assert (out / rel).read_text() == text
    assert not [p for p in out.rglob(".*")]  # no temp files left
    (out / "z").mkdir()
    os.chmod(out / "z", 0o777)  # writable by every user, not sticky
    before = {rel: (out / rel).read_text() for rel in files}
    with pytest.raises(UnsafePathError, match="writable by every user"):
        fsutil.write_tree(out, {"a/first.xml": "x", "z/later.xml": "y",
                                **{rel: "changed" for rel in files}})
    # every folder is checked before anything is written: nothing changed
    assert not (out / "a/first.xml").exists() and not (out / "z/later.xml").exists()
    assert {rel: (out / rel).read_text() for rel in files} == before
    assert not [p for p in out.rglob(".*")]


def test_persist_never_reads_or_writes_through_a_symlink(tmp_path: Path, victim: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/netplan").mkdir(parents=True)
    (root / "etc/netplan/90-kvmnet.yaml").symlink_to(victim)
    with pytest.raises(LiveError, match="symlink"):
        persist.prepare(root, {"etc/netplan/90-kvmnet.yaml": "network: {}\n"})
    assert victim.read_text() == "secret\n"


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run-kvmnet"
    monkeypatch.setattr(lock_mod, "LOCK_DIR", str(d))
    return d


def _lock_file(d: Path) -> Path:
    import hashlib

    return d / ("apply-" + hashlib.sha256(b"qemu:///system").hexdigest()[:16] + ".lock")


def test_the_lock_file(lock_dir: Path) -> None:
    with lock_mod.apply_lock("qemu:///system", 0):
        f = _lock_file(lock_dir)
        assert f.read_text() == str(os.getpid())
        assert stat.S_IMODE(f.stat().st_mode) == 0o644 and f.stat().st_nlink == 1


def test_the_lock_is_never_taken_through_a_symlink_or_hard_link(lock_dir: Path,
                                                                victim: Path) -> None:
    lock_dir.mkdir()
    f = _lock_file(lock_dir)
    f.symlink_to(victim)
    with pytest.raises(LockError, match="symlink"):
        with lock_mod.apply_lock("qemu:///system", 0):
            pass
    f.unlink()
    os.link(victim, f)
    with pytest.raises(LockError, match="hard link"):
        with lock_mod.apply_lock("qemu:///system", 0):
            pass
    assert victim.read_text() == "secret\n"  # not truncated, no pid written


def test_a_lock_dir_others_can_write_is_refused(lock_dir: Path) -> None:
    lock_dir.mkdir()
    lock_dir.chmod(0o777)
    with pytest.raises(LockError, match="writable by every user"):
        with lock_mod.apply_lock("qemu:///system", 0):
            pass


def test_the_host_transaction_lock_is_not_a_symlink(tmp_path: Path, victim: Path) -> None:
    from kvmnet.apply.bridge import store

    d = store.run_dir(tmp_path)
    d.mkdir(parents=True)
    (d / "host-tx.lock").symlink_to(victim)
    with pytest.raises(LiveError):
        with store.tx_lock(tmp_path):
            pass
    assert victim.read_text() == "secret\n"


# ------------------------------------------------------------------ not root

def as_nobody(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run argv as uid/gid 65534 with no groups. It keeps only CAP_DAC_READ_SEARCH
    (read any file), so it can run kvmnet from this venv (under /root); it can write
    nothing root owns."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to drop to uid 65534")
    return subprocess.run(
        [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", *argv],
        capture_output=True, text=True, timeout=120, cwd=cwd, check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)})


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder uid 65534 can reach (pytest's tmp_path is under a 0700 folder)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="kvt-sec-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def test_not_root_fails_clearly_before_anything_changes(libvirtd: object, open_dir: Path
                                                        ) -> None:
    import libvirt

    tmp_path = open_dir
    spec = tmp_path / "spec.yaml"
    spec.write_text("networks:\n  kvt-sec-nobody:\n    mode: isolated\n"
                    "    ipv4: {address: 10.237.1.1/24}\n")
    spec.chmod(0o644)
    for cmd in (["plan"], ["apply", "--yes"]):
        r = as_nobody([str(KVMNET), *cmd, str(spec), "-c", "qemu:///system", "--scope",
                       "kvt-sec-*"], tmp_path)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
        errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
        assert len(errors) == 1, r.stderr
        assert "cannot connect to qemu:///system: permission denied" in errors[0]
        assert "Run as root" in errors[0]
    c = libvirt.open("qemu:///system")
    try:
        assert "kvt-sec-nobody" not in [n.name() for n in c.listAllNetworks()]
    finally:
        c.close()


def test_not_root_cannot_take_the_apply_lock(open_dir: Path) -> None:
    tmp_path = open_dir
    d = tmp_path / "run-kvmnet"
    d.mkdir()
    (d / "x").write_text("")
    code = ("import sys\nfrom kvmnet.errors import LockError\nfrom kvmnet.backend import lock\n"
            f"lock.LOCK_DIR = {str(d)!r}\n"
            "try:\n    with lock.apply_lock('qemu:///system', 0):\n        print('locked')\n"
            "except LockError as e:\n    print(e)\n")
    r = as_nobody([sys.executable, "-c", code], tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "permission denied (run kvmnet apply as root)" in r.stdout, r.stdout
    assert sorted(p.name for p in d.iterdir()) == ["x"]
