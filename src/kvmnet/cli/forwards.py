"""`kvmnet show`'s table of port forwards (rows from kvmnet.plan.forwards.show_rows)."""

from __future__ import annotations

from typing import Any


def forwards_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    t = Table(title="port forwards (kvmnet's state file and the live firewall)")
    for col in ("network", "proto", "host port", "to", "guest", "listen", "sources", "state"):
        t.add_column(col)
    for r in rows:
        addr = f"[{r['address']}]" if ":" in r["address"] else r["address"]
        t.add_row(r["network"], r["proto"], r["host_port"], f"{addr}:{r['guest_port']}",
                  r["guest"] or "-", r["listen"] or "any", ", ".join(r["sources"]) or "any",
                  r["state"])
    return t
