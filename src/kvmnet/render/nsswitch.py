"""/etc/nsswitch.conf's `hosts:` line with libvirt's NSS module (host.resolve_guests).

libvirt's NSS module (Debian: libnss-libvirt) answers guests' names on the host from
libvirt's own records: `libvirt` by the host name a guest gave DHCP (its lease),
`libvirt_guest` by the libvirt domain name. Both go right after `files` (before `dns`,
so a guest's name never leaves the host), and a marker comment says kvmnet put them
there: only then does kvmnet take them out again (host.resolve_guests off), leaving
the rest of the file as it was. Pure: text in, text out.
"""

from __future__ import annotations

from kvmnet.render.guard import require_one_line

SOURCES = ("libvirt", "libvirt_guest")
MARKER = "# kvmnet: 'libvirt libvirt_guest' in hosts: for host.resolve_guests (kvmnet apply)"


def _split(line: str) -> tuple[str, list[str], str]:
    """('hosts:', sources, comment) of a hosts line (sources keep [ACTION] items)."""
    body, hash_, comment = line.partition("#")
    head, _, rest = body.partition(":")
    return head + ":", rest.split(), hash_ + comment


def hosts_sources(text: str | None) -> list[str] | None:
    """The sources of the (first) `hosts:` line; None when there is none."""
    for line in (text or "").splitlines():
        if line.split(":", 1)[0].strip() == "hosts":
            return _split(line)[1]
    return None


def has_libvirt(text: str | None) -> bool:
    src = hosts_sources(text)
    return src is not None and all(s in src for s in SOURCES)


def owned(text: str | None) -> bool:
    """Did kvmnet add them (its marker is there)?"""
    return MARKER in (text or "").splitlines()


def with_libvirt(text: str | None) -> str:
    """The file with libvirt's sources in `hosts:` after `files` (first when there is
    no `files`), and kvmnet's marker; a missing file or line becomes
    `hosts: files libvirt libvirt_guest dns`."""
    lines = (text or "").splitlines()
    out: list[str] = []
    done = False
    for line in lines:
        if not done and line.split(":", 1)[0].strip() == "hosts":
            head, src, comment = _split(line)
            src = [s for s in src if s not in SOURCES]
            at = src.index("files") + 1 if "files" in src else 0
            src[at:at] = list(SOURCES)
            line = f"{head:<16}{' '.join(src)}" + (f" {comment}" if comment else "")
            done = True
        out.append(line)
    if not done:
        out.append(f"{'hosts:':<16}files {' '.join(SOURCES)} dns")
    if MARKER not in out:
        out.append(MARKER)
    require_one_line("/etc/nsswitch.conf", *out)
    return "\n".join(out) + "\n"


def without_libvirt(text: str) -> str:
    """Undo with_libvirt: libvirt's sources and kvmnet's marker out, the rest as is."""
    out: list[str] = []
    done = False
    for line in text.splitlines():
        if line == MARKER:
            continue
        if not done and line.split(":", 1)[0].strip() == "hosts":
            head, src, comment = _split(line)
            line = f"{head:<16}{' '.join(s for s in src if s not in SOURCES)}" + (
                f" {comment}" if comment else "")
            done = True
        out.append(line)
    return "\n".join(out) + "\n"
