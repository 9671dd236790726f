"""libvirt's errors in kvmnet's words: one line, the object's name, what to do."""

from __future__ import annotations

import libvirt


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
