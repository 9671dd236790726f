"""The topology picture for the page: the Graph `kvmnet graph` draws (kvmnet.render.graph),
laid out here in columns and drawn as inline SVG by a template (so every name from the
host is escaped by Jinja2, and no Graphviz output has to be cleaned).

Columns, left to right as traffic comes in: the outside (LAN router, notes), host NICs,
host bridges, libvirt networks (grouped by mode, as Graphviz's clusters), port
forwards, guests (a row per NIC). Edges are curves from a box's right side to the
next box's left side (to the NIC's row of a guest). Live state becomes CSS classes:
active / inactive networks, running / stopped guests, drift (what the spec's plan would
change). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kvmnet.render.graph import Graph, Node

COLUMN = {"router": 0, "note": 0, "nic": 1, "bridge": 2, "network": 3, "forward": 4,
          "guest": 5}
CHAR = 6.4            # px per character of the 11px lines
BOLD = 7.8            # px per character of a 12px bold title
LINE = 15             # px per line of text
TITLE = 19            # px of a box's title line
PAD = 6
GAP_Y = 10
GAP_X = 70
HEADING = 22
MIN_W, MAX_W = 110, 620


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    cls: str = ""


@dataclass(frozen=True)
class Box:
    id: str
    cls: str
    x: float
    y: float
    w: float
    h: float
    texts: tuple[Text, ...]
    tip: str


@dataclass(frozen=True)
class Curve:
    d: str
    cls: str


@dataclass(frozen=True)
class Picture:
    width: float
    height: float
    boxes: tuple[Box, ...]
    curves: tuple[Curve, ...]
    headings: tuple[Text, ...]


@dataclass(frozen=True)
class State:
    """The live facts the picture colours by."""

    active: Mapping[str, bool]         # network name -> active
    running: Mapping[str, bool]        # guest name -> running
    drift: frozenset[str] = frozenset()   # node ids and MACs the plan would change


def _texts(n: Node) -> list[str]:
    return [n.title, *n.lines] if n.kind != "guest" else [n.title, *(t for _, t in n.rows)]


def _height(n: Node) -> float:
    extra = len(n.rows) if n.kind == "guest" else len(n.lines)
    return TITLE + extra * LINE + PAD


def _classes(n: Node, st: State) -> str:
    cls = [f"node kind-{n.kind}"]
    name = n.id.partition(":")[2]
    if n.kind == "network":
        cls.append(f"mode-{n.sub}")
        if name in st.active:
            cls.append("active" if st.active[name] else "inactive")
    if n.kind == "guest" and name in st.running:
        cls.append("running" if st.running[name] else "stopped")
    if n.id in st.drift:
        cls.append("drift")
    return " ".join(cls)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    dx = (x2 - x1) / 2 if x2 > x1 else 40.0   # backwards: a loop out and back in
    return (f"M{x1:.0f},{y1:.0f} C{x1 + dx:.0f},{y1:.0f} {x2 - dx:.0f},{y2:.0f} "
            f"{x2:.0f},{y2:.0f}")


def _columns(g: Graph) -> dict[int, list[tuple[str, Node]]]:
    cols: dict[int, list[tuple[str, Node]]] = {}
    for _cluster, title, nodes in g.clusters():
        for n in nodes:
            cols.setdefault(COLUMN[n.kind], []).append((title, n))
    return cols


def _widths(cols: Mapping[int, Iterable[tuple[str, Node]]]) -> dict[int, float]:
    out = {}
    for c, items in cols.items():
        longest = max((len(n.title) * BOLD if i == 0 else len(t) * CHAR
                       for _, n in items for i, t in enumerate(_texts(n))), default=60.0)
        out[c] = min(MAX_W, max(MIN_W, longest + 2 * PAD))
    return out


def layout(g: Graph, st: State) -> Picture:
    cols = _columns(g)
    widths = _widths(cols)
    xs: dict[int, float] = {}
    x = 10.0
    for c in sorted(cols):
        xs[c], x = x, x + widths[c] + GAP_X
    boxes: dict[str, Box] = {}
    ports: dict[tuple[str, str], float] = {}
    headings: list[Text] = []
    bottom = 0.0
    for c, items in cols.items():
        y, last = 10.0, None
        for title, n in items:
            if title != last:
                headings.append(Text(xs[c], y + 12, title, "heading"))
                y, last = y + HEADING, title
            boxes[n.id] = _box(n, st, xs[c], y, widths[c], ports)
            y += boxes[n.id].h + GAP_Y
        bottom = max(bottom, y)
    curves = []
    for e in g.edges:
        if e.style == "invis" or e.src not in boxes or e.dst not in boxes:
            continue
        a, b = boxes[e.src], boxes[e.dst]
        y2 = ports.get((e.dst, e.dst_port), b.y + b.h / 2)
        cls = "edge dashed" if e.style == "dashed" else "edge"
        if e.src in st.drift or e.dst in st.drift:
            cls += " drift"
        curves.append(Curve(_curve(a.x + a.w, a.y + a.h / 2, b.x, y2), cls))
    return Picture(x - GAP_X + 10, bottom + 10, tuple(boxes.values()), tuple(curves),
                   tuple(headings))


def _box(n: Node, st: State, x: float, y: float, w: float,
         ports: dict[tuple[str, str], float]) -> Box:
    texts = [Text(x + PAD, y + 14, n.title, "title")]
    if n.kind == "guest":
        for i, (port, row) in enumerate(n.rows):
            ty = y + TITLE + i * LINE
            ports[(n.id, port)] = ty + LINE / 2
            mac = row.split(" ")[1] if " " in row else ""
            texts.append(Text(x + PAD, ty + 11, row, "row drift" if mac in st.drift else "row"))
    else:
        texts += [Text(x + PAD, y + TITLE + i * LINE + 11, line, "line")
                  for i, line in enumerate(n.lines)]
    tip = "\n".join(_texts(n))
    return Box(n.id, _classes(n, st), x, y, w, _height(n), tuple(texts), tip)
