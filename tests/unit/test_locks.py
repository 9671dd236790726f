"""kvmnet's three file locks (kvmnet.backend.lock): the apply lock, the host
transaction lock and the forwards state lock are all taken by root, so none may be
taken through a symlink, a hard link, another user's file, or in a folder another
user can change; and each one actually excludes a second holder."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from kvmnet.apply.bridge import store
from kvmnet.backend import firewall
from kvmnet.backend import lock as lock_mod
from kvmnet.backend.forward_files import state_path
from kvmnet.errors import LiveError, LockError, UnsafePathError

NOBODY = 65534
URI = "qemu:///system"
Lock = tuple[Path, Callable[[], AbstractContextManager[object]], type[Exception]]


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Lock]:
    """name -> (the lock file, taking the lock, the error a refusal raises)."""
    root = tmp_path / "root"
    monkeypatch.setattr(lock_mod, "LOCK_DIR", str(root / "run/kvmnet"))
    return {
        "apply": (lock_mod.apply_lock_path(URI), lambda: lock_mod.apply_lock(URI, 0),
                  LockError),
        "host transaction": (store.run_dir(root) / "host-tx.lock",
                             lambda: store.tx_lock(root), LiveError),
        "forwards state": (state_path(root).with_suffix(".lock"),
                           lambda: firewall.state_lock(state_path(root)), LiveError),
    }


NAMES = ["apply", "host transaction", "forwards state"]


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    v = tmp_path / "victim"
    v.write_text("secret\n")
    return v


def _refused(lock: Lock, match: str) -> None:
    _, take, error = lock
    with pytest.raises(error, match=match):
        with take():
            pass


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to hand files to another user")


@pytest.mark.parametrize("name", NAMES)
def test_each_lock_excludes_a_second_holder(locks: dict[str, Lock], name: str) -> None:
    path, take, _ = locks[name]
    with take():
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDONLY)  # released when the block ends
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", NAMES)
def test_no_lock_follows_a_symlink(locks: dict[str, Lock], name: str, victim: Path) -> None:
    path = locks[name][0]
    path.parent.mkdir(parents=True)
    path.symlink_to(victim)
    _refused(locks[name], "is a symlink; remove it")
    assert victim.read_text() == "secret\n" and path.is_symlink()
    path.unlink()
    path.symlink_to(path.parent / "nothing-there-yet")  # a dangling one would be created
    _refused(locks[name], "is a symlink")
    assert not (path.parent / "nothing-there-yet").exists()


@pytest.mark.parametrize("name", NAMES)
def test_no_lock_takes_a_hard_link(locks: dict[str, Lock], name: str, victim: Path) -> None:
    path = locks[name][0]
    path.parent.mkdir(parents=True)
    os.link(victim, path)
    _refused(locks[name], "hard link")
    assert victim.read_text() == "secret\n"


@pytest.mark.parametrize("name", NAMES)
def test_no_lock_takes_another_users_file(locks: dict[str, Lock], name: str) -> None:
    _needs_root()
    path = locks[name][0]
    path.parent.mkdir(parents=True)
    path.write_text("")
    os.chown(path, NOBODY, NOBODY)
    _refused(locks[name], "another user's file")


@pytest.mark.parametrize("name", NAMES)
def test_no_lock_takes_what_is_not_a_file(locks: dict[str, Lock], name: str) -> None:
    path = locks[name][0]
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    _refused(locks[name], "not a file")


@pytest.mark.parametrize("name", NAMES)
def test_no_lock_in_a_folder_others_can_change(locks: dict[str, Lock], name: str) -> None:
    _needs_root()
    folder = locks[name][0].parent
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    _refused(locks[name], "writable by every user")
    folder.chmod(0o775)
    os.chown(folder, 0, NOBODY)
    _refused(locks[name], f"writable by group {NOBODY}")
    folder.chmod(0o755)
    os.chown(folder, NOBODY, 0)
    _refused(locks[name], f"owned by uid {NOBODY}")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("name", NAMES)
def test_no_lock_through_another_users_symlinked_folder(locks: dict[str, Lock], name: str,
                                                        tmp_path: Path) -> None:
    _needs_root()
    folder = locks[name][0].parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder.parent.mkdir(parents=True)
    folder.symlink_to(elsewhere)
    os.lchown(folder, NOBODY, NOBODY)
    _refused(locks[name], f"symlink owned by uid {NOBODY}")
    assert list(elsewhere.iterdir()) == []


def test_a_refusal_is_an_unsafe_path_error_for_the_transaction_locks(
        locks: dict[str, Lock], victim: Path) -> None:
    """tx_lock and state_lock raise LiveError subclasses: apply reports a failed action
    (and rolls back) instead of crashing; the apply lock says LockError, as before."""
    for name in ("host transaction", "forwards state"):
        path, take, _ = locks[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(victim)
        with pytest.raises(UnsafePathError):
            with take():
                pass


def test_the_lock_files_are_private(locks: dict[str, Lock]) -> None:
    for name in NAMES:
        path, take, _ = locks[name]
        with take():
            pass
        assert path.stat().st_mode & 0o777 == (0o644 if name == "apply" else 0o600)
