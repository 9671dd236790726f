"""Every file kvmnet writes goes through one safe path (issue 17, item 3): probed as an
attacker would, as root, with generated attacks.

A throwaway uid (one no account has) plays the other user: it owns the folders, the
symlinks and the files it plants. Each example picks one of kvmnet's writers (render
-o, graph -o as .svg through dot and as .dot, the forwards state file, the watchdog's
registration, the forwards lock, the libvirt hook, persist's host file and its backup,
the boot rollback unit, the watchdog's log), one path it writes, and one attack on
that path or a folder on the way to it:

- the path is a symlink the other user planted, to a file root owns (it stands for
  /etc/shadow) or to a folder root owns;
- a folder on the way is such a symlink, or is owned by the other user, or can be
  written by every user (not sticky) or by the other user's group;
- a folder on the way is a regular file;
- symlinks to the victim sit at every temp name a careless writer would use
  (.NAME.tmp, NAME.tmp, .NAME.PID, NAME~, .NAME.swp; dot's own is .NAME.tmp);
- the path is a hard link to the victim.

What must hold, always: the victim file and the victim folder are unchanged, nothing
but KvmnetError comes out (no traceback), and the first five attacks are refused.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmnet.apply.bridge import boot, persist, store
from kvmnet.apply.bridge.journal import Registration
from kvmnet.backend import files, firewall, forward_files, lock
from kvmnet.cli.diag import graph
from kvmnet.cli.main import main
from kvmnet.errors import KvmnetError
from kvmnet.render import render_all
from kvmnet.spec.load import load

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.yaml"
BUDGET = float(os.environ.get("KVMNET_FUZZ_SECONDS", "20"))
EXAMPLES = max(50, int(400 * BUDGET / 20))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the probes give files to "
                                                          "another uid: needs root")


def _throwaway_uid() -> int:
    """A uid no account has: nothing on the machine is ever given to it but our probes."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    return next(u for u in range(62001, 64000) if u not in taken)


OTHER = _throwaway_uid()
PERSISTED = "etc/netplan/90-kvmnet.yaml"
BACKUP = f"{persist.BACKUP_DIR}/{PERSISTED}.S"


def _render(root: Path) -> None:
    files.write_tree(root / "srv/share/out", render_all(load(SEED)[0]))


def _persist(root: Path) -> None:
    persist.write(root, persist.prepare(root, {PERSISTED: "network: {version: 2}\n"}, "S"))


def _lock(root: Path) -> None:
    with lock.locked(firewall.state_path(root).with_suffix(".lock"), "the forwards lock"):
        pass


def _log(root: Path) -> None:
    os.close(files.open_file(store.registration_path(root).parent / "watchdog.log",
                             os.O_WRONLY | os.O_CREAT | os.O_APPEND))


# name: (what it writes, under root; the call)
WRITERS: dict[str, tuple[tuple[str, ...], Callable[[Path], object]]] = {
    "render -o": (("srv/share/out", "srv/share/out/networks"), _render),
    "graph -o .svg": (("srv/share/g.svg",),
                      lambda r: graph(output=r / "srv/share/g.svg", file=SEED)),
    "graph -o .dot": (("srv/share/g.dot",),
                      lambda r: graph(output=r / "srv/share/g.dot", file=SEED)),
    "forwards state": ((forward_files.STATE_FILE,),
                       lambda r: firewall._set_state(forward_files.state_path(r), "[]\n")),
    "watchdog registration": (("run/kvmnet/watchdog.json",), lambda r: store.register(
        r, Registration(pid=1, start=None, txid="t"))),
    "forwards lock": (("var/lib/kvmnet/forwards.lock",), _lock),
    "libvirt hook": ((forward_files.HOOK_FILE,), forward_files.install),
    "host config and backup": ((PERSISTED, BACKUP), _persist),
    "boot rollback unit": ((f"{store.UNIT_DIR}/{store.UNIT}",), boot.install_unit),
    "watchdog log": (("run/kvmnet/watchdog.log",), _log),
}
REFUSED = ("symlink", "symlink to a folder", "folder's symlink", "folder of another user",
           "folder everyone can write", "folder the other group can write", "file on the way")
ATTACKS = (*REFUSED, "temp names", "hard link")
TEMP_NAMES = (".{}.tmp", "{}.tmp", ".{}.%d", "{}~", ".{}.swp", ".{}.kvmnet")


def _snapshot(victim: Path) -> dict[str, tuple[bytes | str, int, int]]:
    out: dict[str, tuple[bytes | str, int, int]] = {}
    for p in sorted(victim.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(victim))] = (
            p.read_bytes() if p.is_file() else "dir", stat.S_IMODE(st.st_mode), st.st_uid)
    return out


def _give(p: Path, uid: int = OTHER) -> None:
    os.lchown(p, uid, uid)


def _attack(root: Path, target: Path, attack: str, depth: int, victim: Path) -> str:
    """Plant the attack; returns the path the refusal must name."""
    shadow = victim / "shadow"
    folders = [p for p in target.parents if root in p.parents]  # (never root itself)
    folder = folders[min(depth, len(folders) - 1)]
    if attack in ("symlink", "symlink to a folder", "temp names", "hard link"):
        target.parent.mkdir(parents=True, exist_ok=True)
        if attack != "temp names" and target.is_file():
            target.unlink()
    if attack == "symlink":
        target.symlink_to(victim if target.suffix == "" or target.name in ("out", "networks")
                          else shadow)
        _give(target)
        return str(target)
    if attack == "symlink to a folder":
        target.symlink_to(victim)
        _give(target)
        return str(target)
    if attack == "temp names":
        for pattern in TEMP_NAMES:
            name = pattern.format(target.name)
            (target.parent / (name % os.getpid() if "%d" in name else name)).symlink_to(shadow)
        return ""
    if attack == "hard link":
        os.link(shadow, target)
        return ""
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if attack == "folder's symlink":
        folder.symlink_to(victim)
        _give(folder)
    elif attack == "file on the way":
        folder.write_text("a file\n")
    else:
        folder.mkdir()
        if attack == "folder of another user":
            _give(folder)
        elif attack == "folder everyone can write":
            folder.chmod(0o777)
        else:
            os.chown(folder, 0, OTHER)
            folder.chmod(0o775)
    return str(folder)


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(writer=st.sampled_from(sorted(WRITERS)), pick=st.integers(0, 1),
       attack=st.sampled_from(ATTACKS), depth=st.integers(0, 3))
def test_no_write_goes_through_what_another_user_planted(writer: str, pick: int, attack: str,
                                                         depth: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="kvt-sc-"))
    try:
        root, victim = base / "root", base / "victim"
        (root / "etc/libvirt").mkdir(parents=True)
        (root / PERSISTED).parent.mkdir(parents=True)
        (root / PERSISTED).write_text("old\n")
        victim.mkdir()
        (victim / "shadow").write_text("secret\n")
        (victim / "shadow").chmod(0o600)
        before = _snapshot(victim)
        targets, write = WRITERS[writer]
        target = root / targets[pick % len(targets)]
        named = _attack(root, target, attack, depth, victim)
        try:
            write(root)
        except KvmnetError as e:
            refused = str(e)
        else:
            refused = ""
        assert _snapshot(victim) == before, (writer, target, attack)
        if attack in REFUSED and target.name.endswith(".S") and target.is_symlink():
            pass  # a backup's name is a free one: kvmnet went around what was planted
        elif attack in REFUSED:
            assert refused, f"{writer}: {attack} at {named} was not refused"
            assert (named in refused or named.rsplit("/", 1)[0] in refused
                    or "refusing to write outside" in refused), refused
            assert "\n" not in refused
    finally:
        shutil.rmtree(base)


def test_temp_names_are_not_predictable(tmp_path: Path) -> None:
    """Two writes of one file use two temp names no one could guess beforehand."""
    seen: list[str] = []
    real = os.open

    def spy(path: object, flags: int, *a: object, **k: object) -> int:
        if flags & os.O_CREAT:
            seen.append(str(path))
        return real(path, flags, *a, **k)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "open", spy)
        files.write_atomic(tmp_path / "x.conf", "a\n")
        files.write_atomic(tmp_path / "x.conf", "b\n")
    assert len(seen) == 2 and seen[0] != seen[1]
    assert all(len(s) >= len(".x.conf.") + 16 for s in seen), seen
    assert [p.name for p in tmp_path.iterdir()] == ["x.conf"]


def test_render_onto_a_path_under_a_file_says_so(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    for argv in (["render", str(SEED), "-o", str(tmp_path / "file" / "out")],
                 ["graph", "-o", str(tmp_path / "file" / "g.svg"), str(SEED)]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"kvmnet: error: cannot write {tmp_path / 'file'}/"), err
        assert f"{tmp_path / 'file'} is not a folder" in err and "Traceback" not in err
    assert (tmp_path / "file").read_text() == ""


def test_graph_never_lets_dot_write_beside_the_output(tmp_path: Path, victim: Path) -> None:
    """dot -o writes .NAME.tmp beside NAME and follows a symlink there: kvmnet pipes the
    picture out of dot and writes it itself."""
    out = tmp_path / "share"
    out.mkdir(mode=0o1777)
    out.chmod(0o1777)
    (out / ".g.svg.tmp").symlink_to(victim)
    _give(out / ".g.svg.tmp")
    graph(output=out / "g.svg", file=SEED)
    assert (out / "g.svg").read_bytes().startswith(b"<?xml")
    assert victim.read_text() == "secret\n"
    (out / "h.svg").symlink_to(victim)
    _give(out / "h.svg")
    with pytest.raises(KvmnetError, match="is a symlink"):
        graph(output=out / "h.svg", file=SEED)
    assert victim.read_text() == "secret\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.write_text("secret\n")
    v.chmod(0o600)
    return v


# ---------------------------------------------------------------- the libvirt hook

HOOK_NAMES = ["-h", "--help", "--state=/kvt-sc/evil.json", "--log=/kvt-sc/evil.log", "--",
              "-", "-x y", "web"]
STATE_ATTACKS = ["another user's", "writable by others", "a symlink", "damaged"]


@pytest.mark.parametrize("attack", STATE_ATTACKS)
@pytest.mark.parametrize("network", HOOK_NAMES)
def test_the_hook_takes_its_arguments_as_names_and_trusts_only_roots_state(
        tmp_path: Path, network: str, attack: str) -> None:
    """libvirt runs the hook with the network's name first: `--` keeps a name that looks
    like an option a name. The state file becomes firewall rules as root, so one another
    user owns or can write, or a symlink, is not read; the hook logs why and exits 0."""
    import subprocess

    from kvmnet.backend.forward_files import HOOK_FILE, LOG_FILE, STATE_FILE, install

    root = tmp_path / "root"
    (root / "etc/libvirt").mkdir(parents=True)
    install(root)
    state = root / STATE_FILE
    state.parent.mkdir(parents=True, exist_ok=True)
    other = tmp_path / "elsewhere.json"
    other.write_text('{"kvmnet": 1, "forwards": []}\n')
    if attack == "a symlink":
        state.symlink_to(other)
    else:
        state.write_text('{"kvmnet": 1, "forwards": []}\n' if attack != "damaged" else "{")
        if attack == "another user's":
            os.chown(state, OTHER, OTHER)
        elif attack == "writable by others":
            state.chmod(0o666)
    r = subprocess.run([str(root / HOOK_FILE), network, "started", "begin", "-"],
                       input="<network/>", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout and not r.stderr, r
    log = (root / LOG_FILE).read_text()
    assert log.count("\n") == 1, log
    assert "kvmnet-hook[" in log and f"] {network} started: cannot read {state}" in log, log
    reason = {"another user's": f"owned by uid {OTHER}", "writable by others": "(mode 0666)",
              "a symlink": "is a symlink", "damaged": ""}[attack]
    assert reason in log, log
    assert not Path("/kvt-sc").exists()
    assert stat.S_IMODE((root / LOG_FILE).stat().st_mode) == 0o640


# ---------------------------------------------------------------- the journals

JOURNALS = {"run journal": ("run/kvmnet/host-tx.json", "v1-changing.json"),
            "copy on disk": ("var/lib/kvmnet/host-tx.json", "v1-disk-copy.json")}
JOURNAL_ATTACKS = ["another user's", "group-writable", "world-writable", "a symlink",
                   "a fifo"]


@pytest.mark.parametrize("cmd", [["rollback"], ["rollback", "--boot"], ["confirm"]],
                         ids=" ".join)
@pytest.mark.parametrize("attack", JOURNAL_ATTACKS)
@pytest.mark.parametrize("which", sorted(JOURNALS))
def test_a_journal_is_trusted_only_when_root_owns_it_alone(
        tmp_path: Path, which: str, attack: str, cmd: list[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """rollback, rollback --boot and confirm act as root on what the journal says (files
    to put back, links to move): one another user owns or can write, or that is not a
    plain file, is refused with one line naming it, and left as it is."""
    rel, sample = JOURNALS[which]
    path = tmp_path / rel
    path.parent.mkdir(parents=True)
    good = (ROOT / "tests/data/journal" / sample).read_bytes()
    if attack == "a symlink":
        (tmp_path / "elsewhere.json").write_bytes(good)
        path.symlink_to(tmp_path / "elsewhere.json")
        _give(path)
    elif attack == "a fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(good)
        if attack == "another user's":
            _give(path)
        else:
            os.chown(path, 0, OTHER)
            path.chmod(0o660 if attack == "group-writable" else 0o666)
    before = path.lstat()
    if which == "run journal" and "--boot" in cmd:  # it reads only the copy on disk
        assert main([*cmd, "--root", str(tmp_path)]) == 0
        assert "Nothing to roll back at boot" in capsys.readouterr().out
        assert path.lstat() == before
        return
    assert main([*cmd, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert str(path) in err, err
    reason = {"another user's": f"owned by uid {OTHER}", "group-writable": "(mode 0660)",
              "world-writable": "(mode 0666)", "a symlink": "is a symlink",
              "a fifo": "not a regular file"}[attack]
    assert reason in err, err
    after = path.lstat()
    assert (after.st_mode, after.st_uid, after.st_mtime_ns) == (
        before.st_mode, before.st_uid, before.st_mtime_ns)
