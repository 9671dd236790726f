"""`kvmnet show`'s table of port forwards (rows from kvmnet.plan.forwards.show_rows)."""

from __future__ import annotations

from typing import Any

from kvmnet.cli.output import DEFAULT_VIEW, Column, TableView, print_table

COLUMNS = (Column("network"), Column("proto"), Column("host port"), Column("to"),
           Column("guest"), Column("listen"), Column("sources"), Column("state"))


def forwards_table(rows: list[dict[str, Any]], view: TableView = DEFAULT_VIEW) -> None:
    def to(r: dict[str, Any]) -> str:
        addr = f"[{r['address']}]" if ":" in r["address"] else r["address"]
        return f"{addr}:{r['guest_port']}"

    print_table("port forwards (kvmnet's state file and the live firewall)", COLUMNS,
                ([r["network"], r["proto"], str(r["host_port"]), to(r), r["guest"] or "-",
                  r["listen"] or "any", ",".join(r["sources"]) or "any", r["state"]]
                 for r in rows), view)
