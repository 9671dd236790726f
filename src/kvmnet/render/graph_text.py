"""The topology picture as text: a Graph (render.graph) -> Graphviz DOT or Mermaid.

DOT through the graphviz package (it quotes every name and attribute): rankdir LR,
one cluster per stage and per network mode, one column per stage (NICs | bridges |
networks | guests, pinned with rank=same so 50 networks stay in columns), HTML labels
with guests' NICs as table rows (ports). Mermaid: the same
clusters as subgraphs, guests as subgraphs of their NICs (Mermaid has no ports).
"""

from __future__ import annotations

import re
from html import escape
from typing import cast

import graphviz

from kvmnet.render.graph import Graph, Node

# -- DOT ----------------------------------------------------------------------------

# (fill, border) per node kind; networks by mode
COLORS: dict[str, tuple[str, str]] = {
    "router": ("#eeeeee", "#777777"), "nic": ("#fff6d5", "#b59a3a"),
    "bridge": ("#dbe9f7", "#4a7bb0"), "guest": ("#efe6f7", "#7d5aa6"),
    "forward": ("#ffffff", "#b05a4a"), "note": ("#fffbe6", "#b59a3a"),
    "nat": ("#dcf2dc", "#4c9a4c"), "route": ("#fde3d3", "#c0703a"),
    "open": ("#fdf0c8", "#b08a20"), "isolated": ("#e4e4e4", "#707070"),
    "bridge-net": ("#d6eef0", "#3a8a95"), "macvtap": ("#e8e0d0", "#8a7040"),
    "overlay": ("#e0e8ff", "#5060b0"), "unknown": ("#ffffff", "#cc0000"),
}


def _color(n: Node) -> tuple[str, str]:
    if n.kind == "network":
        return COLORS["bridge-net" if n.sub == "bridge" else n.sub]
    return COLORS[n.kind]


def _id(node_id: str) -> str:
    """A node's DOT name. The graphviz package reads ':' in an edge's end as node:port,
    so the graph's "kind:name" ids are written "kind/name" (no name holds a '/'; an
    IPv6 router's "router/fe80//1" stays one name); graphviz.escape keeps backslashes
    and "<...>" literal."""
    return cast(str, graphviz.escape(node_id.replace(":", "/")))


def _label(n: Node) -> str:
    """An HTML-like label (graphviz passes "<...>" through): text escaped by html.escape."""
    if n.kind == "guest":  # NIC rows on the left (edges come in from the west), name right
        fill, border = _color(n)
        name = (f'<td rowspan="{max(len(n.rows), 1)}" bgcolor="{border}"><font color="white">'
                f"<b>{escape(n.title)}</b></font></td>")
        cells = [f'<tr><td port="{p}" align="left">{escape(t)}</td>{name if i == 0 else ""}'
                 "</tr>" for i, (p, t) in enumerate(n.rows)] or [f"<tr>{name}</tr>"]
        return ('<<table border="0" cellborder="1" cellspacing="0" cellpadding="3" '
                f'bgcolor="{fill}" color="{border}">{"".join(cells)}</table>>')
    body = f"<b>{escape(n.title)}</b>" if n.kind != "forward" else escape(n.title)
    for line in n.lines:
        body += f'<br/><font point-size="9">{escape(line)}</font>'
    return f"<{body}>"


_SHAPES = {"router": "box3d", "nic": "box", "bridge": "box", "network": "box",
           "forward": "cds", "note": "note"}


def _node_attrs(n: Node) -> dict[str, str]:
    if n.kind == "guest":
        return {"shape": "plain"}
    fill, border = _color(n)
    return {"shape": _SHAPES[n.kind], "fillcolor": fill, "color": border,
            "style": "rounded,filled" if n.kind in ("bridge", "network") else "filled"}


def dot_graph(g: Graph) -> graphviz.Digraph:
    """The picture as a graphviz.Digraph: rankdir LR, a cluster per stage and per
    network mode, one column per stage (rank=same) whatever the clusters do."""
    d = graphviz.Digraph(
        "kvmnet",
        graph_attr={"rankdir": "LR", "newrank": "true", "nodesep": "0.12", "ranksep": "0.5",
                    "fontname": "Helvetica", "fontsize": "11", "labeljust": "l",
                    "style": "rounded", "color": "#bbbbbb",
                    **({"label": graphviz.escape(g.title), "labelloc": "t"} if g.title else {})},
        node_attr={"fontname": "Helvetica", "fontsize": "10", "margin": "0.08,0.03",
                   "height": "0.3"},
        edge_attr={"fontname": "Helvetica", "fontsize": "8", "arrowsize": "0.6",
                   "color": "#555555"})
    for cid, title, nodes in g.clusters():
        with d.subgraph(name=f"cluster_{cid}") as c:
            c.attr(label=graphviz.escape(title))
            for n in nodes:
                c.node(_id(n.id), _label(n), **_node_attrs(n))
    for kinds in (("nic",), ("bridge",), ("network", "forward"), ("guest",)):
        same = [_id(n.id) for n in g.nodes if n.kind in kinds]
        if len(same) > 1:
            with d.subgraph() as column:
                column.attr(rank="same")
                for name in same:
                    column.node(name)
    for e in g.edges:
        d.edge(_id(e.src), _id(e.dst) + (f":{e.dst_port}:w" if e.dst_port else ""),
               graphviz.escape(e.label) if e.label else None,
               style=None if e.style == "solid" else e.style)
    return d


def to_dot(g: Graph) -> str:
    """DOT text of the picture (graph -o FILE.dot; .svg/.png: dot_graph(g).pipe)."""
    return cast(str, dot_graph(g).source)


# -- Mermaid ------------------------------------------------------------------------

def _m(text: str) -> str:
    """Text inside a Mermaid "..." label."""
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;")
            .replace(">", "#gt;"))


class _Ids:
    """Mermaid ids: letters, digits and '_' only, unique, readable."""

    def __init__(self) -> None:
        self.map: dict[str, str] = {}

    def __call__(self, key: str) -> str:
        if key not in self.map:
            base = re.sub(r"[^A-Za-z0-9_]", "_", key)
            mid, i = base, 2
            while mid in self.map.values():
                mid, i = f"{base}_{i}", i + 1
            self.map[key] = mid
        return self.map[key]


def to_mermaid(g: Graph) -> str:
    ids = _Ids()
    out = ["---", f"title: {_m(g.title)}", "---"] if g.title else []
    out.append("flowchart LR")
    classes: dict[str, list[str]] = {}
    for cid, title, nodes in g.clusters():
        out.append(f'  subgraph {ids("c_" + cid)}["{_m(title)}"]')
        for n in nodes:
            if n.kind == "guest":
                out.append(f'    subgraph {ids(n.id)}["{_m(n.title)}"]')
                for port, text in n.rows:
                    out.append(f'      {ids(n.id + ":" + port)}["{_m(text)}"]')
                    classes.setdefault("guest", []).append(ids(n.id + ":" + port))
                out.append("    end")
                continue
            title = f"<b>{_m(n.title)}</b>" if n.kind != "forward" else _m(n.title)
            label = "<br/>".join([title, *map(_m, n.lines)])
            open_, close = {"router": ("[[", "]]"), "forward": (">", "]"),
                            "note": ("[/", "/]")}.get(n.kind, ("[", "]"))
            out.append(f'    {ids(n.id)}{open_}"{label}"{close}')
            key = n.kind if n.kind != "network" else ("bridge-net" if n.sub == "bridge"
                                                      else n.sub)
            classes.setdefault(key, []).append(ids(n.id))
        out.append("  end")
    for e in g.edges:
        dst = ids(e.dst + ":" + e.dst_port) if e.dst_port else ids(e.dst)
        arrow = {"solid": "-->", "dashed": "-.->", "invis": "~~~"}[e.style]
        label = f'|"{_m(e.label)}"|' if e.label and e.style != "invis" else ""
        out.append(f"  {ids(e.src)} {arrow}{label} {dst}")
    for key, members in classes.items():
        fill, border = COLORS[key]
        out.append(f"  classDef {key.replace('-', '_')} fill:{fill},stroke:{border}")
        out.append(f"  class {','.join(members)} {key.replace('-', '_')}")
    return "\n".join(out) + "\n"
