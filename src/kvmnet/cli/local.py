"""CLI commands that need only the spec file, not libvirt: validate, render, mac, schema."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kvmnet.cli import complete
from kvmnet.cli.common import JsonOpt, SpecFile, commands, load_checked
from kvmnet.cli.output import err, out
from kvmnet.errors import KvmnetError

if TYPE_CHECKING:
    from kvmnet.errors import Problem
    from kvmnet.model.spec import Spec

app = commands()


@app.command()
def validate(file: SpecFile, as_json: JsonOpt = False) -> None:
    """Check a spec: syntax, types, and every semantic rule, all problems at once.

    Errors are printed as FILE:LINE:COL: error: what is wrong and what to write
    instead; exit 1 when there is any error. Warnings don't fail.
    """
    spec, problems = load_checked(file, as_json)  # (errors: cli.main prints them, as JSON
    if as_json:                                    # with --json)
        out.json({"kvmnet": 1, "ok": True, "problems": [p.as_dict() for p in problems]})
        return
    counts = (f"{len(spec.networks)} network(s), {len(spec.guests)} guest(s), "
              f"{len(spec.host.bridges)} host bridge(s)")
    out.print(f"{'<stdin>' if str(file) == '-' else file}: valid ({counts})")


@app.command()
def render(
    file: SpecFile,
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="DIR",
                                                help="Write the files under DIR "
                                                     "(layout: see README).")] = None,
    connect_: Annotated[str | None, typer.Option(
        "-c", "--connect", metavar="URI",
        help="The libvirt URI apply will use: generated MACs are salted with its host "
             "(default: $LIBVIRT_DEFAULT_URI, then qemu:///system).")] = None,
) -> None:
    """Render every artefact: libvirt network XML, guest <interface> XML, host bridge
    configs (ifupdown, netplan, NetworkManager, systemd-networkd), upstream routes.

    Without -o the files are printed, each under a '==> PATH <==' header. With -o,
    DIR/.kvmnet-render.json lists what was written: the next render into DIR removes
    the files of this one it no longer makes (unless changed since), and nothing else.
    """
    from kvmnet.model.uri import mac_host_of
    from kvmnet.render import render_all

    spec, _ = load_owned(file)
    files = render_all(spec, mac_host_of(connect_))
    if output is None:
        text = "".join(f"==> {path} <==\n{files[path]}"
                       + ("" if files[path].endswith("\n") else "\n") for path in sorted(files))
        out.print(text, end="")
        return
    from kvmnet.backend.render_dir import MANIFEST, write_rendered

    done = write_rendered(output, files)
    gone = (f"; removed {len(done.removed)} the last render wrote and this one does not "
            f"({', '.join(done.removed)})" if done.removed else "")
    out.print(f"wrote {len(files)} files under {output}/{gone} (list: {output}/{MANIFEST})")
    for rel in done.kept:
        err.print(f"note: kept {output}/{rel}: the last render wrote it, this one does not, "
                  "but it was changed since; remove it yourself if it is not needed")


@app.command()
def mac(
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=65536,
                                       help="How many random MACs.")] = 1,
    for_: Annotated[str | None, typer.Option("--for", metavar="GUEST/INDEX",
                                             autocompletion=complete.guest_nics,
                                             help="The stable MAC kvmnet gives NIC INDEX "
                                                  "(0-based) of GUEST.")] = None,
    spec_file: Annotated[Path | None, typer.Option("--spec", metavar="FILE",
                                                   help="Avoid the MACs this spec uses, and "
                                                        "resolve --for as apply would.")] = None,
    as_json: JsonOpt = False,
    connect_: Annotated[str | None, typer.Option(
        "-c", "--connect", metavar="URI",
        help="With --spec: the libvirt URI apply will use (generated MACs are salted with "
             "its host; default: $LIBVIRT_DEFAULT_URI, then qemu:///system).")] = None,
) -> None:
    """Print MAC addresses for guests: random ones (52:54:00:xx:xx:xx, unicast, unique,
    never one the --spec uses) or the stable one kvmnet generates for GUEST/INDEX.

    With --json: {"kvmnet": 1, "macs": [...]}, and with --for also "guest" and "index".
    """
    from secrets import token_bytes

    from kvmnet.model.derive import nic_macs, spec_macs, stable_mac
    from kvmnet.model.uri import mac_host_of

    spec = None
    if spec_file is not None:
        spec, _ = load_owned(spec_file)
    if for_ is not None:
        guest, sep, idx = for_.rpartition("/")
        if not sep or not guest or not idx.isdigit():
            raise typer.BadParameter("write GUEST/INDEX, e.g. web1/0", param_hint="--for")
        if spec is None:
            got = stable_mac(guest, int(idx))
        else:
            _known_nic(spec, spec_file, guest, int(idx))
            got = nic_macs(spec, host=mac_host_of(connect_))[(guest, int(idx))]
        if as_json:
            out.json({"kvmnet": 1, "guest": guest, "index": int(idx), "macs": [got]})
        else:
            out.print(got)
        return
    used = spec_macs(spec) | set(nic_macs(spec).values()) if spec else set()
    made: list[str] = []
    while len(made) < count:
        b = token_bytes(3)
        m = f"52:54:00:{b[0]:02x}:{b[1]:02x}:{b[2]:02x}"
        if m not in used:
            used.add(m)
            made.append(m)
    if as_json:
        out.json({"kvmnet": 1, "macs": made})
    else:
        out.print("\n".join(made))


def load_owned(path: Path) -> tuple[Spec, list[Problem]]:
    """load_checked, and the spec's owner (its file's path by default), as plan has it:
    generated MACs are salted with it."""
    from kvmnet.spec.owner import default_owner

    spec, problems = load_checked(path)
    if spec.owner is None:
        spec = spec.model_copy(update={"owner": default_owner(path)})
    return spec, problems


def _known_nic(spec: Spec, file: Path | None, guest: str, idx: int) -> None:
    """--for GUEST/INDEX names a NIC of the spec, or the command fails saying which there are."""
    from difflib import get_close_matches

    g = spec.guests.get(guest)
    if g is None:
        close = get_close_matches(guest, spec.guests, n=1)
        raise KvmnetError(
            f"--for {guest}/{idx}: {file} has no guest {guest}"
            + (f" (did you mean {close[0]}?)" if close else "")
            + f"; its guests: {', '.join(sorted(spec.guests)) or 'none'}")
    if idx >= len(g.interfaces):
        raise KvmnetError(f"--for {guest}/{idx}: guest {guest} in {file} has "
                          f"{len(g.interfaces)} NIC(s): INDEX is 0 to "
                          f"{len(g.interfaces) - 1}" if g.interfaces else
                          f"--for {guest}/{idx}: guest {guest} in {file} has no NICs")


@app.command()
def man() -> None:
    """Print kvmnet's manual page (roff, made from this CLI's help): read it with
    `kvmnet man | man -l -`, or install it as /usr/share/man/man1/kvmnet.1."""
    from kvmnet.cli.manpage import render_man

    out.print(render_man(), end="")


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE",
                                                help="Write it to FILE.")] = None,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="The spec's reference instead (docs/SPEC.md): every key with "
                           "its type, default, meaning and an example.")] = False,
) -> None:
    """Print the spec's JSON Schema (draft-07), for editors: with yaml-language-server
    (VS Code's YAML extension and others) a spec starting with the line
    '# yaml-language-server: $schema=PATH/kvmnet.schema.json' gets completion, help on
    hover and checks as it is typed."""
    if markdown:
        from kvmnet.spec.reference import markdown as reference

        text = reference()
    else:
        from kvmnet.spec.schema import schema_text

        text = schema_text()
    if output is None:
        out.print(text, end="")
        return
    from kvmnet.backend.files import write_atomic

    try:
        write_atomic(output, text)
    except OSError as e:
        raise KvmnetError(f"cannot write {output}: {e.strerror or e}") from None
    out.print(f"wrote {output}")
