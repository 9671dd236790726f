"""libvirt's errors in kvmnet's words: one line, the object's name, what to do."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import libvirt


def explain_open_error(uri: str, e: libvirt.libvirtError) -> str:
    code = e.get_error_code()
    text = e.get_error_message() or str(e)
    low = text.lower()
    ssh = explain_ssh_error(uri, text) if "+ssh:" in uri.split("//", 1)[0] else None
    if ssh is not None:
        return ssh
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


def explain_ssh_error(uri: str, text: str) -> str | None:
    """What the OpenSSH client under a qemu+ssh:// URI refused, in one line with what to
    do; None when ssh got through (then the far side's libvirt speaks, and the usual
    explanations apply). ssh's own multi-line warnings are not repeated."""
    host = urlsplit(uri).hostname or "the host"
    low = text.lower()
    why = f"cannot connect to {uri}: ssh to {host}"
    if "remote host identification has changed" in low:
        fp = re.search(r"SHA256:[A-Za-z0-9+/=]+", text)
        offered = f" (it now offers {fp.group(0)})" if fp else ""
        return (f"{why} refused: its host key is not the one known_hosts holds for it"
                f"{offered}. kvmnet never accepts a changed key; if {host} was really "
                f"reinstalled, check the new fingerprint there, then `ssh-keygen -R {host}` "
                f"and `ssh root@{host} true` once")
    if "host key verification failed" in low:
        return (f"{why} refused: no host key is known for it (strict checking). Accept it "
                f"once after checking its fingerprint: `ssh root@{host} true` "
                "(docs/CLUSTER.md)")
    if "permission denied (" in low:
        return (f"{why}: login refused ({_ssh_line(text, 'permission denied')}). Log in "
                f"with a key: `ssh-copy-id root@{host}`, or an IdentityFile in ~/.ssh/config; "
                "an encrypted key must be in ssh-agent (docs/CLUSTER.md)")
    if "ssh: " in low and ("port" in low or "resolve hostname" in low):
        line = _ssh_line(text, "ssh: ")
        hint = {"connection refused": f"is sshd running on {host}?",
                "timed out": "it did not answer within ssh's ConnectTimeout",
                "no route to host": "the network path to it is down",
                "could not resolve": "check the name"}
        extra = next((h for k, h in hint.items() if k in line.lower()), "")
        return f"{why} failed: {line}" + (f"; {extra}" if extra else "")
    return None


def _ssh_line(text: str, marker: str) -> str:
    """The line of ssh's output around MARKER, without libvirt's wrapping."""
    for line in re.split(r"[\r\n]+", text):
        i = line.lower().find(marker)
        if i >= 0:
            line = line[i:].split(": Connection reset by peer")[0]
            return line.removeprefix("ssh: ").strip().rstrip(".")
    return text.strip()


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
