"""libvirt's own test data, fetched by ./scripts/setup (scripts/libvirt-testdata) from
Debian's source package into .testdata/ of this checkout (gitignored):

- ``installed()``: the data of the libvirt installed here (networkxml2xmlin/-out, and
  networkxml2xmltest.c, which says which inputs libvirt itself expects to be rejected);
  the round trip holds kvmnet to the same library the data comes from.
- ``nftables()``: a libvirt whose networkxml2firewalldata has the nftables backend's
  rules (the installed one's when it has them, else Debian trixie's libvirt 11).

Missing or stale data fails the test that needs it with "run ./scripts/setup": the
suite never skips because of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".testdata"


@dataclass(frozen=True)
class Source:
    """One unpacked source package's test folders and where they came from."""

    path: Path
    debian_version: str
    upstream_version: str

    @property
    def version_number(self) -> int:
        """As libvirt's getVersion() gives it: major * 1,000,000 + minor * 1,000 + micro."""
        major, minor, micro = (int(x) for x in self.upstream_version.split(".")[:3])
        return major * 1_000_000 + minor * 1_000 + micro

    def expected_failures(self) -> set[str]:
        """The networkxml2xmlin names libvirt's own networkxml2xmltest.c runs with
        DO_TEST_PARSE_ERROR: libvirt must reject them."""
        text = (self.path / "networkxml2xmltest.c").read_text()
        return set(re.findall(r'^\s*DO_TEST_PARSE_ERROR\("([^"]+)"\);', text, re.M))

    def tested_names(self) -> set[str]:
        """Every name networkxml2xmltest.c tests (DO_TEST, DO_TEST_FLAGS, ...)."""
        text = (self.path / "networkxml2xmltest.c").read_text()
        return set(re.findall(r'^\s*DO_TEST\w*\("([^"]+)"', text, re.M))


def _missing(what: str, why: str) -> None:
    pytest.fail(f"libvirt's test data ({what}) {why}: run ./scripts/setup", pytrace=False)


def _load(name: str) -> Source | None:
    source = DATA / name / "SOURCE"
    if not source.is_file():
        return None
    fields = dict(line.split(": ", 1) for line in source.read_text().splitlines() if ": " in line)
    return Source(source.parent.resolve(), fields["debian-version"], fields["upstream-version"])


def installed_or_none() -> Source | None:
    """For collection (parametrize): the installed libvirt's data, None when missing."""
    return _load("installed")


def installed() -> Source:
    """The installed libvirt's data; fails the test when missing or of another version."""
    src = _load("installed")
    if src is None:
        _missing(str(DATA / "installed"), "is missing")
    assert src is not None
    import libvirt

    if src.version_number != libvirt.getVersion():
        _missing(f"libvirt {src.upstream_version}", f"is not of the installed libvirt "
                 f"({libvirt.getVersion()})")
    return src


def nftables() -> Source:
    """A libvirt's networkxml2firewalldata with *.nftables files."""
    src = _load("nftables")
    if src is None or not any((src.path / "networkxml2firewalldata").glob("*.nftables")):
        _missing(str(DATA / "nftables"), "is missing")
    assert src is not None
    return src


def firewall_file(name: str) -> Path:
    """One of networkxml2firewalldata's files: .nftables ones from ``nftables()``,
    the others (.args, .iptables) from the installed libvirt's data."""
    src = nftables() if name.endswith(".nftables") else installed()
    path = src.path / "networkxml2firewalldata" / name
    if not path.is_file():
        _missing(str(path), f"has no such file in libvirt {src.upstream_version}")
    return path
