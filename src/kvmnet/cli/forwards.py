"""`kvmnet show`'s table of port forwards (rows from kvmnet.plan.forwards.show_rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kvmnet.cli.output import table

if TYPE_CHECKING:
    from rich.table import Table


def forwards_table(rows: list[dict[str, Any]]) -> Table:
    def to(r: dict[str, Any]) -> str:
        addr = f"[{r['address']}]" if ":" in r["address"] else r["address"]
        return f"{addr}:{r['guest_port']}"

    return table("port forwards (kvmnet's state file and the live firewall)",
                 ("network", "proto", "host port", "to", "guest", "listen", "sources", "state"),
                 ([r["network"], r["proto"], str(r["host_port"]), to(r), r["guest"] or "-",
                   r["listen"] or "any", ", ".join(r["sources"]) or "any", r["state"]]
                  for r in rows))
