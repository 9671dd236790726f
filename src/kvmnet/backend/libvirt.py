"""The one door to libvirt: open a connection, read raw XML, make write calls.

Every write goes through `Connection` so it can be counted (idempotence
tests and benchmarks assert "zero writes") and so every libvirt error
becomes a LiveError with the object's name and libvirt's own words.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libvirt

from kvmnet.errors import LiveError

T = TypeVar("T")

DEFAULT_URI = "qemu:///system"


def default_uri(uri: str | None) -> str:
    return uri or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def _silence(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


libvirt.registerErrorHandler(_silence, None)


def explain_open_error(uri: str, e: libvirt.libvirtError) -> str:
    code = e.get_error_code()
    text = e.get_error_message() or str(e)
    low = text.lower()
    # Not root: libvirtd asks polkit over D-Bus ("Unable to get system bus connection:
    # ... No such file or directory" when there is none); that is not a stopped daemon.
    denied = ("permission denied", "polkit", "system bus", "authentication unavailable",
              "authentication failed", "access denied")
    if any(w in low for w in denied) or code in (libvirt.VIR_ERR_AUTH_FAILED,
                                                  libvirt.VIR_ERR_AUTH_UNAVAILABLE):
        return (f"cannot connect to {uri}: permission denied. Run as root, or as a member "
                "of the 'libvirt' group")
    if code == libvirt.VIR_ERR_NO_CONNECT and "no connection driver" in low:
        return (f"cannot connect to {uri}: unknown URI (libvirt says: {text}). Use e.g. "
                "qemu:///system, qemu+ssh://HOST/system or test:///default")
    if "no such file" in low or "connection refused" in low or "failed to connect" in low:
        return (f"cannot connect to {uri}: libvirtd is not running (start it: systemctl "
                f"start libvirtd, or virtqemud/virtnetworkd) — libvirt says: {text}")
    return f"cannot connect to {uri}: {text}"


# libvirt cuts long error messages at a byte count, sometimes inside a UTF-8 character;
# the binding then fails to decode its own error and raises these instead of
# libvirtError (seen with a non-ASCII character in a network's XML).
BINDING_ERRORS = (UnicodeDecodeError, SystemError)


def one_line(e: libvirt.libvirtError) -> str:
    """libvirt's message on one line (a failed dnsmasq's output has line breaks)."""
    return " ".join((e.get_error_message() or str(e)).split())


def unreadable(e: Exception) -> str:
    return (f"libvirt refused the call, but its error message could not be decoded ({e}); "
            "look for a non-ASCII character in the spec's values")


@dataclass
class Connection:
    """A libvirt connection with counted writes."""

    uri: str
    raw: Any
    writes: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, uri: str | None = None) -> Connection:
        u = default_uri(uri)
        try:
            raw = libvirt.open(u)
        except libvirt.libvirtError as e:
            raise LiveError(explain_open_error(u, e)) from None
        if raw is None:  # pragma: no cover - old bindings
            raise LiveError(f"cannot connect to {u}")
        return cls(u, raw)

    @property
    def is_test(self) -> bool:
        """test:/// drivers: in-process, nothing on the real host may change."""
        return self.uri.startswith("test:")

    def close(self) -> None:
        try:
            self.raw.close()
        except libvirt.libvirtError:
            pass

    # -- reads -------------------------------------------------------------
    def read(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except libvirt.libvirtError as e:
            raise LiveError(f"{what}: {one_line(e)}") from None
        except BINDING_ERRORS as e:
            raise LiveError(f"{what}: {unreadable(e)}") from None

    # -- writes ------------------------------------------------------------
    def write(self, what: str, fn: Callable[[], T], raw_errors: bool = False) -> T:
        """Run one write call; count it; turn a libvirt error into a LiveError
        (unless the caller handles libvirt's error itself)."""
        self.writes.append(what)
        try:
            return fn()
        except libvirt.libvirtError as e:
            if raw_errors:
                raise
            raise LiveError(f"{what}: libvirt says: {one_line(e)}") from None
        except BINDING_ERRORS as e:
            raise LiveError(f"{what}: {unreadable(e)}") from None


class NoLibvirt:
    """Stands in for a libvirt connection when the spec needs none (only `host:`):
    nothing to list, and any other call is a bug that fails loudly."""

    def listAllNetworks(self, flags: int = 0) -> list[Any]:  # noqa: N802 (libvirt's name)
        return []

    def listAllDomains(self, flags: int = 0) -> list[Any]:  # noqa: N802
        return []

    def close(self) -> int:
        return 0


@contextmanager
def connect(uri: str | None, needed: bool = True) -> Iterator[Connection]:
    """Open uri; with needed=False (a spec without networks or guests) contact nothing."""
    if not needed:
        yield Connection(default_uri(uri), NoLibvirt())
        return
    conn = Connection.open(uri)
    try:
        yield conn
    finally:
        conn.close()
