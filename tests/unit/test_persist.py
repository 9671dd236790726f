"""Persistent host files under --root: written atomically with backups, and put back
byte for byte (mode and owner too) by a rollback; files and folders that did not
exist are removed again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kvmnet.apply.bridge import persist
from kvmnet.apply.bridge.journal import JOURNAL, Journal, Step
from kvmnet.apply.bridge.persist import BACKUP_DIR
from kvmnet.errors import LiveError

NETPLAN = "etc/netplan/90-kvmnet.yaml"
IFUPDOWN = "etc/network/interfaces.d/kvmnet-br0"


def tree(root: Path) -> dict[str, tuple[bytes | None, int, int, int]]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (
            None if p.is_dir() else p.read_bytes(), st.st_mode, st.st_uid, st.st_gid)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc/netplan").mkdir(parents=True)
    old = r / NETPLAN
    old.write_bytes(b"# old\nnetwork: {version: 2}\n\xff not utf-8\n")
    os.chmod(old, 0o640)
    if os.geteuid() == 0:
        os.chown(old, 1234, 4321)
    (r / "etc/netplan/01-netcfg.yaml").write_text("network: {version: 2}\n")
    return r


FILES = {NETPLAN: "network:\n  version: 2\n  bridges: {br0: {}}\n",
         IFUPDOWN: "auto br0\niface br0 inet manual\n"}


def test_write_then_restore_is_byte_identical(root: Path) -> None:
    before = tree(root)
    changes = persist.prepare(root, FILES, "20260101T000000")
    assert [c.path for c in changes] == [NETPLAN, IFUPDOWN]  # sorted, both differ
    replaced, new = changes
    assert new.before is None and new.backup is None
    assert new.new_dirs == ("etc/network", "etc/network/interfaces.d")
    assert replaced.before == before[NETPLAN][0] and replaced.mode == 0o640
    assert replaced.backup == f"{BACKUP_DIR}/{NETPLAN}.20260101T000000"

    persist.write(root, changes)
    assert (root / NETPLAN).read_text() == FILES[NETPLAN]
    assert (root / NETPLAN).stat().st_mode & 0o777 == 0o600  # netplan: not world-readable
    assert (root / IFUPDOWN).read_text() == FILES[IFUPDOWN]
    assert (root / IFUPDOWN).stat().st_mode & 0o777 == 0o644
    assert (root / replaced.backup).read_bytes() == before[NETPLAN][0]
    assert not list((root / "etc/netplan").glob("*.kvmnet-bak"))  # never beside the original
    assert not [p for p in root.rglob(".*")]  # no temp files left

    done = persist.restore(root, changes)
    assert done == [f"removed {IFUPDOWN}", f"restored {NETPLAN}"]
    assert tree(root) == before


def test_restore_twice_and_after_a_half_write(root: Path) -> None:
    before = tree(root)
    changes = persist.prepare(root, FILES)
    persist.write(root, changes[:1])  # stopped after the first file
    persist.restore(root, changes)
    assert tree(root) == before
    assert persist.restore(root, changes) == []
    assert tree(root) == before


def test_unchanged_files_are_left_out(root: Path) -> None:
    persist.write(root, persist.prepare(root, FILES))
    assert persist.prepare(root, FILES) == []


def test_json_round_trip_keeps_every_byte(root: Path) -> None:
    """Through the journal's codec, as the watchdog and the boot unit read them."""
    (root / NETPLAN).write_bytes(bytes(range(256)))  # not text, not UTF-8
    changes = persist.prepare(root, FILES)
    assert any(c.before == bytes(range(256)) for c in changes)
    j = Journal(txid="t", state="waiting", steps=(Step(bridge="br0", links=(),
                                                       files=tuple(changes)),),
                netns=None, apply_pid=1, apply_start=None, root=str(root), created=0.0,
                timeout=1.0, deadline=0.0, persisted=None, rollback_now=None, errors=())
    back = JOURNAL.loads(JOURNAL.dumps(j), "test")
    assert list(back.steps[0].files) == changes


def test_a_folder_someone_else_filled_is_kept(root: Path) -> None:
    changes = persist.prepare(root, FILES)
    persist.write(root, changes)
    (root / "etc/network/interfaces.d/theirs").write_text("x\n")
    persist.restore(root, changes)
    assert not (root / IFUPDOWN).exists()
    assert (root / "etc/network/interfaces.d/theirs").read_text() == "x\n"


def test_backup_names_never_overwrite(root: Path) -> None:
    (root / BACKUP_DIR / "etc/netplan").mkdir(parents=True)
    taken = root / BACKUP_DIR / f"{NETPLAN}.stamp"
    taken.write_text("an earlier backup\n")
    [c] = persist.prepare(root, {NETPLAN: "new\n"}, "stamp")
    assert c.backup == f"{BACKUP_DIR}/{NETPLAN}.stamp.2"
    persist.write(root, [c])
    persist.restore(root, [c])
    assert taken.read_text() == "an earlier backup\n"


@pytest.mark.parametrize("rel", ["../outside", "etc/../../outside", "link/escape"])
def test_paths_outside_root_are_refused(root: Path, rel: str) -> None:
    (root / "link").symlink_to(root.parent)
    with pytest.raises(LiveError, match="outside"):
        persist.prepare(root, {rel: "x"})
