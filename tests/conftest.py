"""Lab fixtures: a real libvirtd in the network namespace ``kvmnet-lab`` (see tests/lab/).

Convention: every libvirt network and domain a test makes is named ``kvt-...``
(``lab.libvirtd.TEST_PREFIX``); ``lv_conn`` removes, at teardown, each ``kvt-``
network and domain that did not exist when the test began.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

_TESTS_DIR = str(Path(__file__).parent)
if _TESTS_DIR not in sys.path:  # so `import lab` works in any pytest import mode
    sys.path.insert(0, _TESTS_DIR)

from lab.libvirtd import (  # noqa: E402
    LIBVIRTD,
    TEST_PREFIX,
    LabError,
    Libvirtd,
    object_names,
    remove_objects,
)

LAB_FIXTURES = {"libvirtd", "lv_conn"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the lab get the ``libvirtd`` marker (``-m 'not libvirtd'``)."""
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.libvirtd)


@pytest.fixture(scope="session")
def libvirtd() -> Iterator[Libvirtd]:
    """The lab's libvirtd (.uri, .netns, .netns_exec(), .ns_links(), .iproute()).

    Skips only when it cannot work at all (not root, no libvirtd binary); any other
    failure to start is an error, with libvirtd's log tail.
    """
    if os.geteuid() != 0:
        pytest.skip("the libvirtd lab needs root (network namespaces, libvirtd)")
    if not os.access(LIBVIRTD, os.X_OK):
        pytest.skip(f"{LIBVIRTD} missing: install libvirt-daemon (see scripts/setup)")
    lab = Libvirtd()
    try:
        lab.start()
    except LabError as e:
        pytest.fail(f"lab libvirtd did not start: {e}", pytrace=False)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def lv_conn(libvirtd: Libvirtd):
    """An open connection to the lab libvirtd; removes the test's ``kvt-`` objects after."""
    conn = libvirtd.open()
    before = object_names(conn, TEST_PREFIX)
    try:
        yield conn
    finally:
        try:
            remove_objects(conn, TEST_PREFIX, keep=before)
        finally:
            conn.close()


@pytest.fixture
def raw(libvirtd: Libvirtd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> Iterator[libvirt.virConnect]:
    """A connection to the lab libvirtd scoped to the test module's PREFIX (its objects
    are removed before and after), with kvmnet's locks in the test's own folder."""
    from kvmnet.backend import lock as lock_mod

    monkeypatch.setattr(lock_mod, "LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("KVMNET_LOCK_DIR", str(tmp_path / "locks"))
    with libvirtd.scoped_conn(request.module.PREFIX) as c:
        yield c
