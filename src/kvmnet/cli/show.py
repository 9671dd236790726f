"""CLI commands that list what is live: show (networks, guests' NICs, port forwards) and
leases (guests' addresses). Tables as kubectl's and virsh's: whole cells, plain columns
into a pipe, -o wide for more columns, --no-headers for scripts (cli.output.print_table).
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kvmnet.cli import complete
from kvmnet.cli.common import ConnectOpt, JsonOpt, commands, connect
from kvmnet.cli.output import DEFAULT_VIEW, Column, TableView, err, out, print_table, when
from kvmnet.errors import LiveError

if TYPE_CHECKING:
    from kvmnet.backend.libvirt import Connection

app = commands()

NetnsOpt = Annotated[str | None, typer.Option(
    "--netns", metavar="NAME", help="Read host links inside this network namespace "
                                    "(labs, tests).")]
RootOpt = Annotated[Path, typer.Option(
    "--root", metavar="DIR", help="Where kvmnet's host files are (port forwards' state "
                                  "file) instead of /.")]


class Output(StrEnum):
    """-o: as kubectl's and virsh's."""

    wide = "wide"
    json = "json"


OutputOpt = Annotated[Output | None, typer.Option(
    "-o", "--output", metavar="FORMAT",
    help="wide: more columns (as kubectl's -o wide); json: the same as --json.")]
NoHeadersOpt = Annotated[bool, typer.Option(
    "--no-headers", help="No header row and no title: only the rows, for scripts.")]


def _view(output: Output | None, no_headers: bool) -> TableView:
    return TableView(wide=output is Output.wide, headers=not no_headers)


@app.command()
def show(connect_: ConnectOpt = None, as_json: JsonOpt = False, netns: NetnsOpt = None,
         root: RootOpt = Path("/"), output: OutputOpt = None,
         no_headers: NoHeadersOpt = False) -> None:
    """List networks (mode, bridge, subnet, active, autostart, owner), guests' NICs (with
    the guest firewall sets each uses) and the port forwards kvmnet installed, each
    installed or not.

    Into a pipe the tables are plain columns (headers in capitals, a blank line between
    tables); -o wide adds the NICs' model and every address with its source.
    """
    from kvmnet.service.ops import read_live
    from kvmnet.service.views import show_data

    with connect(connect_) as conn:
        live = read_live(conn, netns, root)
        data = show_data(live, all_leases(conn, live, netns=netns))
    if as_json or output is Output.json:
        out.json(data)
    else:
        show_tables(data, _view(output, no_headers))


NETWORK_COLUMNS = (Column("name"), Column("mode"), Column("bridge"), Column("subnets"),
                   Column("active"), Column("autostart"), Column("owner"))
NIC_COLUMNS = (Column("guest"), Column("state"), Column("mac"), Column("attached to"),
               Column("model", wide=True), Column("ip"), Column("addresses", wide=True),
               Column("firewall"), Column("vlans", wide=True))


def show_tables(data: dict[str, Any], view: TableView = DEFAULT_VIEW) -> None:
    print_table(f"networks on {data['uri']}", NETWORK_COLUMNS,
                ([n["name"], n["mode"], n["bridge"] or "-", ",".join(n["subnets"]) or "-",
                  _yn(n["active"]), _yn(n["autostart"]),
                  n["owner"] + (" (kvmnet cannot read it)" if n.get("unreadable") else "")]
                 for n in data["networks"]), view)
    _gap(view)
    print_table("guests' NICs", NIC_COLUMNS,
                ([x["guest"], "running" if x["running"] else "shut-off", x["mac"],
                  f"{x['type']}:{x['source'] or '-'}", x["model"] or "-", x["ip"] or "-",
                  ",".join(f"{a['ip']}({a['source']})" for a in x.get("addresses", ()))
                  or "-", _firewall(x), x.get("vlans") or "-"] for x in data["interfaces"]),
                view)
    if data.get("forwards"):
        from kvmnet.cli.forwards import forwards_table

        _gap(view)
        forwards_table(data["forwards"], view)


def _gap(view: TableView) -> None:
    """A blank line between two tables in a pipe (a terminal's tables have titles)."""
    if not out.console.is_terminal:
        out.print("")


def _firewall(nic: dict[str, Any]) -> str:
    """The NIC's guest firewall sets (+antispoof), or the filter kvmnet did not make."""
    parts = list(nic.get("firewalls") or []) + (["antispoof"] if nic.get("antispoof") else [])
    if parts:
        return ",".join(parts)
    return f"{nic['filter']}(not-kvmnet's)" if nic.get("filter") else "-"


def _yn(v: bool) -> str:
    return "yes" if v else "no"


def all_leases(conn: Connection, live: Any, only: list[str] | None = None,
               netns: str | None = None) -> list[dict[str, Any]]:
    """Guests' addresses from DHCP leases, the guest agent and the host's neighbour table,
    each row marked with its source (kvmnet.backend.neigh)."""
    from kvmnet.backend.neigh import guest_addresses

    return guest_addresses(conn, live, only, netns)


LEASE_COLUMNS = (Column("network"), Column("mac"), Column("ip"), Column("hostname"),
                 Column("expires"), Column("source", wide=True))


@app.command()
def leases(
    network: Annotated[str | None, typer.Argument(
        metavar="[NETWORK]", autocompletion=complete.networks)] = None,
    connect_: ConnectOpt = None,
    as_json: JsonOpt = False,
    netns: NetnsOpt = None,
    output: OutputOpt = None,
    no_headers: NoHeadersOpt = False,
) -> None:
    """Guests' addresses (all networks, or one), each marked with its source: dhcp-lease
    (libvirt's dnsmasq), agent (QEMU guest agent), neighbour (the host's ARP/NDP table).

    A DHCP lease shows when it expires, as a local time and how long from now; with
    --json as `expiry`, seconds since the epoch. "No leases" goes to stderr, so that a
    pipe gets no lines.
    """
    from kvmnet.backend.read import read_domains, read_networks
    from kvmnet.model.live import LiveState

    with connect(connect_) as conn:
        nets = read_networks(conn)
        if network and network not in nets:
            raise LiveError(f"no such network on {conn.uri}: {network}")
        live = LiveState(conn.uri, nets, read_domains(conn))
        rows = all_leases(conn, live, [network] if network else None, netns)
    if as_json or output is Output.json:
        from kvmnet.service.views import leases_data

        out.json(leases_data(conn.uri, rows))
        return
    if not rows:
        err.print(f"No leases on {conn.uri}" + (f" in network {network}." if network else "."))
        return
    now = time.time()
    print_table(f"guest addresses on {conn.uri}", LEASE_COLUMNS,
                ([r["network"] or "-", r["mac"],
                  f"{r['ip']}" + (f"/{r['prefix']}" if r["prefix"] is not None else ""),
                  r["hostname"] or r.get("guest") or "-", when(r["expiry"], now),
                  ",".join(r.get("sources") or [r["source"]])] for r in rows),
                _view(output, no_headers))
