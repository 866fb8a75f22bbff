"""Readable pictures of a lineage neighbourhood: a layout, SVG, and DOT pinned to it.

Graphviz's ``dot`` puts every child of a node on one rank, so a 96-well plate
becomes a single row 26,000 points wide. Here the layout is computed in
Python instead:

* nodes are ranked top to bottom (a parent above all its children);
* the children a node reaches through one relationship type, when they have
  grid addresses (``A1`` .. ``H12``, or ``row_idx``/``col_idx``), are drawn in
  their plate grid inside one frame, and the many parent -> child arrows
  become one arrow to the frame ("contains x 96");
* other fan-outs wider than ``max_row`` become a frame wrapped into rows of at
  most ``max_row``, and any rank still wider is wrapped likewise.

The SVG is written directly (no Graphviz needed). PNG goes through Graphviz
with every node pinned to the same coordinates, so both pictures agree; the
DOT text from :func:`to_dot` renders the same way with a plain ``dot -Tpng``.
Object names are untrusted text: every string is escaped for XML (SVG and
DOT's HTML-like labels), and characters XML cannot carry are replaced.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from tapdb_core.errors import TapdbError

MAX_ROW = 12
"""Most nodes side by side in a wrapped fan-out or rank."""
MAX_LINE_WIDTH = 1400.0
"""A rank wider than this (in px) is wrapped onto further lines."""
MAX_GRID_ROWS = 32  # a 1536-well plate is 32 x 48; anything larger is not a plate
MAX_GRID_COLS = 48

FONT_FAMILY = "DejaVu Sans Mono, Menlo, Consolas, monospace"
GRAPHVIZ_FONT = "DejaVu Sans Mono"
CHAR_WIDTH = 0.61
"""Advance of one character in em; the font is monospaced so widths are predictable."""

MARGIN = 16.0
RANK_GAP = 56.0
ITEM_GAP = 24.0
LINE_GAP = 28.0
FRAME_PAD = 8.0
HEADER = 16.0
CELL_GAP = 4.0
NAME_CHARS = 30
CELL_NAME_CHARS = 16

_CELL_ADDRESS = re.compile(r"([A-Za-z]{1,2})0*([1-9][0-9]{0,2})")
_NATURAL = re.compile(r"(\d+)")


class RendererUnavailableError(TapdbError):
    """The program a picture format needs is not installed."""


@attrs.frozen(kw_only=True)
class NodeIn:
    """A node to lay out: ``key`` is its EUID."""

    key: str
    name: str
    kind: str = ""
    """Shown small under the name, e.g. ``container/plate``."""
    properties: Mapping[str, Any] = attrs.field(factory=dict)
    deleted: bool = False


@attrs.frozen(kw_only=True)
class EdgeIn:
    parent: str
    child: str
    relationship: str


@attrs.frozen(kw_only=True)
class Box:
    """A node drawn at ``(x, y)`` (top left), ``w`` x ``h`` px."""

    key: str
    x: float
    y: float
    w: float
    h: float
    lines: tuple[str, ...]
    """First line bold; the last one small and grey when there are three."""
    title: str
    """Hover text: the whole name and kind, never truncated."""
    cell: bool = False
    deleted: bool = False
    center: bool = False

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@attrs.frozen(kw_only=True)
class Label:
    x: float
    y: float
    text: str


@attrs.frozen(kw_only=True)
class Frame:
    """A fan-out drawn as one block: a plate grid or wrapped rows."""

    x: float
    y: float
    w: float
    h: float
    parent: str
    relationship: str
    members: tuple[str, ...]
    headers: tuple[Label, ...] = ()
    """Column numbers and row letters of a grid."""

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@attrs.frozen(kw_only=True)
class Arrow:
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    parent: str
    child: str
    """The child's key; for a frame's arrow, its first member's."""
    frame: int | None = None
    """Index in :attr:`Layout.frames` of the frame this arrow points at."""

    @property
    def bundled(self) -> bool:
        return self.frame is not None

    @property
    def label_at(self) -> tuple[float, float]:
        """Where the label goes: on the arrow, in the free gap just above its head
        (every line of nodes starts at its top, so that gap holds nothing else)."""
        y = self.y2 - RANK_GAP / 2
        if self.y2 <= self.y1:
            return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2
        t = max(0.0, (y - self.y1) / (self.y2 - self.y1))
        return self.x1 + t * (self.x2 - self.x1), max(y, self.y1)


@attrs.frozen(kw_only=True)
class Layout:
    width: float
    height: float
    boxes: tuple[Box, ...]
    frames: tuple[Frame, ...]
    arrows: tuple[Arrow, ...]
    edges: tuple[EdgeIn, ...]
    """Every edge of the graph, drawn or folded into a bundled arrow."""

    def box(self, key: str) -> Box:
        for b in self.boxes:
            if b.key == key:
                return b
        raise KeyError(key)


# -- text ------------------------------------------------------------------


def clean(value: str) -> str:
    """One line of text XML can carry: controls and non-characters become U+FFFD,
    line breaks and tabs become spaces."""
    out = []
    for ch in value:
        code = ord(ch)
        if ch in "\t\n\r":
            out.append(" ")
        elif (
            code < 0x20
            or 0x7F <= code < 0xA0
            or 0xD800 <= code <= 0xDFFF
            or code in (0xFFFE, 0xFFFF)
        ):
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out)


def xml_escape(value: str) -> str:
    """Text safe inside an XML element or a double- or single-quoted attribute."""
    return (
        clean(value)
        .replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def shorten(value: str, limit: int) -> str:
    value = clean(value)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def _text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_WIDTH


def natural_key(value: str) -> tuple[tuple[int, int | str], ...]:
    """``Tube 2`` before ``Tube 10``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.casefold())
        for part in _NATURAL.split(value)
        if part
    )


# -- grid addresses --------------------------------------------------------


def grid_cell(properties: Mapping[str, Any]) -> tuple[int, int] | None:
    """(row, column) from 0 of a well: its ``address`` ("A1", "H12", "AF48"),
    else its integer ``row_idx``/``col_idx``; None when it has neither or
    they lie outside any plate."""
    address = properties.get("address")
    if isinstance(address, str):
        m = _CELL_ADDRESS.fullmatch(address.strip())
        if m:
            row = 0
            for letter in m.group(1).upper():
                row = row * 26 + (ord(letter) - ord("A") + 1)
            cell = (row - 1, int(m.group(2)) - 1)
            return cell if cell[0] < MAX_GRID_ROWS and cell[1] < MAX_GRID_COLS else None
    row_idx, col_idx = properties.get("row_idx"), properties.get("col_idx")
    if (
        isinstance(row_idx, int)
        and isinstance(col_idx, int)
        and not isinstance(row_idx, bool)
        and not isinstance(col_idx, bool)
        and 0 <= row_idx < MAX_GRID_ROWS
        and 0 <= col_idx < MAX_GRID_COLS
    ):
        return row_idx, col_idx
    return None


def row_name(row: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    name = ""
    row += 1
    while row:
        row, rest = divmod(row - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


# -- layout ----------------------------------------------------------------


def _ranks(keys: Sequence[str], edges: Sequence[EdgeIn]) -> dict[str, int]:
    """Longest path from a source: every parent above all its children."""
    children: dict[str, list[str]] = defaultdict(list)
    indegree = dict.fromkeys(keys, 0)
    for e in edges:
        children[e.parent].append(e.child)
        indegree[e.child] += 1
    rank = dict.fromkeys(keys, 0)
    queue = deque(k for k in keys if indegree[k] == 0)
    seen = set()
    while queue:
        k = queue.popleft()
        seen.add(k)
        for c in children[k]:
            rank[c] = max(rank[c], rank[k] + 1)
            indegree[c] -= 1
            if indegree[c] == 0:
                queue.append(c)
    # lineage refuses cycles; should one appear anyway, its nodes go last
    bottom = max(rank.values(), default=0) + 1
    for k in keys:
        if k not in seen:
            rank[k] = bottom
    return rank


@attrs.define
class _Item:
    """One thing placed on a rank: a single node or a frame of several."""

    kind: Literal["node", "grid", "wrap"]
    keys: list[str]
    parent: str = ""
    relationship: str = ""
    rows: int = 1
    cols: int = 1
    cells: dict[str, tuple[int, int]] = attrs.field(factory=dict)
    cell_w: float = 0.0
    cell_h: float = 0.0
    w: float = 0.0
    h: float = 0.0
    order: float = 0.0


def _node_lines(n: NodeIn) -> tuple[str, ...]:
    lines = [clean(n.key), shorten(n.name, NAME_CHARS)]
    if n.kind:
        lines.append(shorten(n.kind, NAME_CHARS))
    return tuple(lines)


def _node_size(n: NodeIn) -> tuple[float, float]:
    lines = _node_lines(n)
    width = max(_text_width(line, 13 if i == 0 else 12) for i, line in enumerate(lines))
    return max(96.0, width + 20), 12 + 16 * len(lines)


def _cell_lines(n: NodeIn, grid: bool) -> tuple[str, ...]:
    # in a grid the headers say where a well is: its EUID is what a reader needs
    if grid:
        return (clean(n.key),)
    return clean(n.key), shorten(n.name, CELL_NAME_CHARS)


def _size_item(item: _Item, nodes: Mapping[str, NodeIn], max_row: int) -> None:
    if item.kind == "node":
        item.w, item.h = _node_size(nodes[item.keys[0]])
        return
    grid = item.kind == "grid"
    widest = max(_text_width(line, 11) for k in item.keys for line in _cell_lines(nodes[k], grid))
    item.cell_w = max(48.0 if grid else 72.0, widest + 16)
    item.cell_h = 26.0 if grid else 40.0
    if not grid:
        item.cols = min(max_row, len(item.keys))
        item.rows = math.ceil(len(item.keys) / item.cols)
    header = HEADER if grid else 0.0
    item.w = 2 * FRAME_PAD + header + item.cols * (item.cell_w + CELL_GAP) - CELL_GAP
    item.h = 2 * FRAME_PAD + header + item.rows * (item.cell_h + CELL_GAP) - CELL_GAP


def _grid_dims(parent: NodeIn | None, cells: Iterable[tuple[int, int]]) -> tuple[int, int]:
    cells = list(cells)
    rows = max(r for r, _ in cells) + 1
    cols = max(c for _, c in cells) + 1
    if parent is not None:
        # the plate's own format, so a plate with wells missing keeps its shape
        pr, pc = parent.properties.get("rows"), parent.properties.get("columns")
        if isinstance(pr, int) and isinstance(pc, int) and not isinstance(pr, bool):
            if rows <= pr <= MAX_GRID_ROWS and cols <= pc <= MAX_GRID_COLS:
                rows, cols = pr, pc
    return rows, cols


def _items_for_rank(
    keys: list[str],
    nodes: Mapping[str, NodeIn],
    parent_edges: Mapping[str, list[EdgeIn]],
    max_row: int,
) -> list[_Item]:
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    loose: list[str] = []
    for k in keys:
        sources = {(e.parent, e.relationship) for e in parent_edges.get(k, [])}
        if len(sources) == 1:
            groups[next(iter(sources))].append(k)
        else:
            loose.append(k)
    items: list[_Item] = []
    for (parent, relationship), members in groups.items():
        members.sort(key=lambda k: (natural_key(nodes[k].name), k))
        cells = {k: grid_cell(nodes[k].properties) for k in members}
        placed = {c for c in cells.values() if c is not None}
        if len(members) >= 2 and len(placed) == len(members):
            rows, cols = _grid_dims(nodes.get(parent), placed)
            items.append(
                _Item(
                    kind="grid",
                    keys=members,
                    parent=parent,
                    relationship=relationship,
                    rows=rows,
                    cols=cols,
                    cells={k: c for k, c in cells.items() if c is not None},
                )
            )
        elif len(members) > max_row:
            items.append(_Item(kind="wrap", keys=members, parent=parent, relationship=relationship))
        else:
            loose.extend(members)
    items.extend(_Item(kind="node", keys=[k]) for k in loose)
    for item in items:
        _size_item(item, nodes, max_row)
    return items


def _wrap(items: list[_Item], max_row: int) -> list[list[_Item]]:
    lines: list[list[_Item]] = []
    width = 0.0
    for item in items:
        if lines and len(lines[-1]) < max_row and width + ITEM_GAP + item.w <= MAX_LINE_WIDTH:
            lines[-1].append(item)
            width += ITEM_GAP + item.w
        else:
            lines.append([item])
            width = item.w
    return lines


def layout(
    nodes: Sequence[NodeIn],
    edges: Sequence[EdgeIn],
    *,
    center: str | None = None,
    max_row: int = MAX_ROW,
) -> Layout:
    """Positions for every node; see the module docstring for the rules."""
    if max_row < 1:
        raise ValueError("max_row must be at least 1")
    by_key = {n.key: n for n in nodes}
    keys = list(by_key)
    edges = [e for e in edges if e.parent in by_key and e.child in by_key and e.parent != e.child]
    parent_edges: dict[str, list[EdgeIn]] = defaultdict(list)
    for e in edges:
        parent_edges[e.child].append(e)
    rank = _ranks(keys, edges)
    by_rank: dict[int, list[str]] = defaultdict(list)
    for k in keys:
        by_rank[rank[k]].append(k)

    lines: list[list[_Item]] = []
    x_of: dict[str, float] = {}
    for r in sorted(by_rank):
        items = _items_for_rank(by_rank[r], by_key, parent_edges, max_row)
        for item in items:
            # under their parents (barycentre), so arrows cross less
            xs = [x_of[e.parent] for k in item.keys for e in parent_edges.get(k, [])]
            item.order = sum(xs) / len(xs) if xs else 0.0
        items.sort(
            key=lambda i: (
                i.order,
                i.kind == "node",
                natural_key(by_key[i.keys[0]].name),
                i.keys[0],
            )
        )
        rank_lines = _wrap(items, max_row)
        for line in rank_lines:
            # a provisional x: the final one is centred, but the order is what counts
            x = 0.0
            for item in line:
                for k in item.keys:
                    x_of[k] = x + item.w / 2
                x += item.w + ITEM_GAP
        lines.extend(rank_lines)

    width = max(
        (sum(i.w for i in line) + ITEM_GAP * (len(line) - 1) for line in lines), default=0.0
    )
    width += 2 * MARGIN
    boxes: list[Box] = []
    frames: list[Frame] = []
    y = MARGIN
    for line in lines:
        line_w = sum(i.w for i in line) + ITEM_GAP * (len(line) - 1)
        line_h = max(i.h for i in line)
        x = (width - line_w) / 2
        for item in line:
            _place(item, x, y, by_key, center, boxes, frames)
            x += item.w + ITEM_GAP
        y += line_h + RANK_GAP
    height = (y - RANK_GAP + MARGIN) if lines else 2 * MARGIN
    return Layout(
        width=round(width, 1),
        height=round(height, 1),
        boxes=tuple(boxes),
        frames=tuple(frames),
        arrows=_arrows(edges, boxes, frames),
        edges=tuple(edges),
    )


def _place(
    item: _Item,
    x: float,
    y: float,
    nodes: Mapping[str, NodeIn],
    center: str | None,
    boxes: list[Box],
    frames: list[Frame],
) -> None:
    if item.kind == "node":
        n = nodes[item.keys[0]]
        boxes.append(
            Box(
                key=n.key,
                x=x,
                y=y,
                w=item.w,
                h=item.h,
                lines=_node_lines(n),
                title=_title(n),
                deleted=n.deleted,
                center=n.key == center,
            )
        )
        return
    grid = item.kind == "grid"
    header = HEADER if grid else 0.0
    left, top = x + FRAME_PAD + header, y + FRAME_PAD + header
    headers: list[Label] = []
    if grid:
        for c in range(item.cols):
            cx = left + c * (item.cell_w + CELL_GAP) + item.cell_w / 2
            headers.append(Label(x=cx, y=y + FRAME_PAD + HEADER / 2, text=str(c + 1)))
        for r in range(item.rows):
            cy = top + r * (item.cell_h + CELL_GAP) + item.cell_h / 2
            headers.append(Label(x=x + FRAME_PAD + HEADER / 2, y=cy, text=row_name(r)))
    for i, k in enumerate(item.keys):
        r, c = item.cells[k] if grid else divmod(i, item.cols)
        n = nodes[k]
        boxes.append(
            Box(
                key=k,
                x=left + c * (item.cell_w + CELL_GAP),
                y=top + r * (item.cell_h + CELL_GAP),
                w=item.cell_w,
                h=item.cell_h,
                lines=_cell_lines(n, grid),
                title=_title(n),
                cell=True,
                deleted=n.deleted,
                center=k == center,
            )
        )
    frames.append(
        Frame(
            x=x,
            y=y,
            w=item.w,
            h=item.h,
            parent=item.parent,
            relationship=item.relationship,
            members=tuple(item.keys),
            headers=tuple(headers),
        )
    )


def _title(n: NodeIn) -> str:
    text = f"{n.key} {n.name}"
    if n.kind:
        text += f" ({n.kind})"
    return text + (" [deleted]" if n.deleted else "")


def _arrows(
    edges: Sequence[EdgeIn], boxes: Sequence[Box], frames: Sequence[Frame]
) -> tuple[Arrow, ...]:
    at = {b.key: b for b in boxes}
    bundled: dict[tuple[str, str, str], Frame] = {}
    for f in frames:
        for k in f.members:
            bundled[(f.parent, k, f.relationship)] = f
    arrows: list[Arrow] = []
    for i, f in enumerate(frames):
        p = at[f.parent]
        arrows.append(
            Arrow(
                x1=p.cx,
                y1=p.y + p.h,
                x2=f.cx,
                y2=f.y,
                label=f"{f.relationship} \u00d7 {len(f.members)}",
                parent=f.parent,
                child=f.members[0],
                frame=i,
            )
        )
    for e in edges:
        if (e.parent, e.child, e.relationship) in bundled:
            continue
        p, c = at[e.parent], at[e.child]
        arrows.append(
            Arrow(
                x1=p.cx,
                y1=p.y + p.h,
                x2=c.cx,
                y2=c.y,
                label=e.relationship,
                parent=e.parent,
                child=e.child,
            )
        )
    return tuple(arrows)


# -- SVG -------------------------------------------------------------------


def arrow_labels(lay: Layout) -> dict[int, tuple[float, float, str]]:
    """Arrow index -> (x, y, text) of its label. Arrows into one head with the same
    label share one label (at their mean position), so it is not printed twice."""
    groups: dict[tuple[float, float, str], list[int]] = defaultdict(list)
    for i, a in enumerate(lay.arrows):
        groups[(a.x2, a.y2, a.label)].append(i)
    labels = {}
    for (_, _, text), members in groups.items():
        points = [lay.arrows[i].label_at for i in members]
        x = sum(p[0] for p in points) / len(points)
        y = sum(p[1] for p in points) / len(points)
        labels[members[0]] = (x, y, shorten(text, NAME_CHARS))
    return labels


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


_FILL = "#eef3fb"
_CELL_FILL = "#f7f9fc"
_CENTER_FILL = "#fff4d6"
_STROKE = "#4a6fa5"
_GREY = "#666666"


def _box_style(b: Box) -> tuple[str, str, str]:
    """(fill, stroke, dash) of a box."""
    fill = _CENTER_FILL if b.center else _CELL_FILL if b.cell else _FILL
    stroke = "#b26b00" if b.center else _STROKE
    return fill, stroke, "4 3" if b.deleted else ""


def to_svg(lay: Layout) -> str:
    """A standalone SVG document of the layout (UTF-8, no external resources)."""
    w, h = math.ceil(lay.width), math.ceil(lay.height)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family="{xml_escape(FONT_FAMILY)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{_GREY}"/></marker></defs>',
        f'<rect width="{w}" height="{h}" fill="#ffffff"/>',
    ]
    for f in lay.frames:
        out.append(
            f'<rect x="{_n(f.x)}" y="{_n(f.y)}" width="{_n(f.w)}" height="{_n(f.h)}" rx="8" '
            f'fill="none" stroke="#999999" stroke-dasharray="6 4"/>'
        )
        for lab in f.headers:
            out.append(
                f'<text x="{_n(lab.x)}" y="{_n(lab.y)}" font-size="10" fill="{_GREY}" '
                f'text-anchor="middle" dominant-baseline="central">{xml_escape(lab.text)}</text>'
            )
    for a in lay.arrows:
        out.append(
            f'<line x1="{_n(a.x1)}" y1="{_n(a.y1)}" x2="{_n(a.x2)}" y2="{_n(a.y2)}" '
            f'stroke="{_GREY}" stroke-width="{1.6 if a.bundled else 1}" marker-end="url(#arrow)"/>'
        )
    for b in lay.boxes:
        fill, stroke, dash = _box_style(b)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f"<g><title>{xml_escape(b.title)}</title>")
        out.append(
            f'<rect x="{_n(b.x)}" y="{_n(b.y)}" width="{_n(b.w)}" height="{_n(b.h)}" '
            f'rx="{3 if b.cell else 5}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{2 if b.center else 1}"{dash_attr}/>'
        )
        for i, (size, colour, weight, line) in enumerate(_box_text(b)):
            ty = b.y + b.h / 2 + (i - (len(b.lines) - 1) / 2) * (15 if b.cell else 16)
            out.append(
                f'<text x="{_n(b.cx)}" y="{_n(ty)}" font-size="{size}" fill="{colour}"'
                f'{weight} text-anchor="middle" dominant-baseline="central">'
                f"{xml_escape(line)}</text>"
            )
        out.append("</g>")
    for mx, my, label in arrow_labels(lay).values():
        lw = _text_width(label, 10) + 6
        out.append(
            f'<rect x="{_n(mx - lw / 2)}" y="{_n(my - 7)}" width="{_n(lw)}" height="14" '
            f'fill="#ffffff" fill-opacity="0.85"/>'
            f'<text x="{_n(mx)}" y="{_n(my)}" font-size="10" fill="{_GREY}" '
            f'text-anchor="middle" dominant-baseline="central">{xml_escape(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _box_text(b: Box) -> list[tuple[int, str, str, str]]:
    """(font size, colour, weight attribute, text) per line of a box."""
    rows = []
    for i, line in enumerate(b.lines):
        if b.cell:
            rows.append(
                (11, "#1d2b40" if i == 0 else _GREY, ' font-weight="bold"' if i == 0 else "", line)
            )
        elif i == 0:
            rows.append((13, "#1d2b40", ' font-weight="bold"', line))
        elif i == 2:
            rows.append((11, _GREY, "", line))
        else:
            rows.append((12, "#1d2b40", "", line))
    return rows


# -- DOT and PNG -----------------------------------------------------------


def dot_id(value: str) -> str:
    """A quoted DOT identifier. Inside quotes DOT only unescapes ``\\"``, and a
    trailing backslash would swallow the closing quote: backslashes and quotes
    are replaced, so a hostile key cannot end the string."""
    return '"' + clean(value).replace("\\", "\u29f5").replace('"', "\u201d") + '"'


def _html(text: str) -> str:
    # HTML-like labels are XML: no backslash escapes, nothing for \N or \G to expand
    return xml_escape(text)


def to_dot(lay: Layout) -> str:
    """Graphviz DOT with every node and edge pinned to the layout (``layout=nop2``:
    positions are taken as given, as ``neato -n2`` does), so
    ``dot -Tsvg``/``-Tpng`` draw the same picture as :func:`to_svg`. The edges of
    a bundled fan-out are kept (invisible) so the text still lists every edge."""
    height = lay.height

    def pos(x: float, y: float) -> str:
        return f'pos="{_n(x)},{_n(height - y)}!"'  # Graphviz's y axis points up

    def inches(v: float) -> str:
        return f"{v / 72:.4f}"

    out = [
        "digraph lineage {",
        '  graph [layout=nop2, splines=line, outputorder=edgesfirst, bgcolor="#ffffff", pad=0.2];',
        f'  node [shape=box, style="rounded,filled", fixedsize=true, fontname="{GRAPHVIZ_FONT}", '
        f"fontsize=11, penwidth=1, margin=0];",
        f'  edge [color="{_GREY}", fontname="{GRAPHVIZ_FONT}", fontsize=10, fontcolor="{_GREY}", '
        "arrowsize=0.7];",
    ]
    for i, f in enumerate(lay.frames):
        out.append(
            f'  {dot_id(f"_frame_{i}")} [label="", {pos(f.x + f.w / 2, f.y + f.h / 2)}, '
            f"width={inches(f.w)}, height={inches(f.h)}, "
            f'color="#999999", style="rounded,dashed"];'
        )
        for j, lab in enumerate(f.headers):
            out.append(
                f'  {dot_id(f"_frame_{i}_h{j}")} [shape=plaintext, style="", '
                f'label=<{_html(lab.text)}>, fontsize=10, fontcolor="{_GREY}", '
                f"{pos(lab.x, lab.y)}, width={inches(HEADER)}, height={inches(HEADER)}];"
            )
    for b in lay.boxes:
        fill, stroke, dash = _box_style(b)
        style = "rounded,filled" + (",dashed" if dash else "")
        label = "<BR/>".join(
            f'<FONT POINT-SIZE="{size}" COLOR="{colour}">'
            + (f"<B>{_html(line)}</B>" if weight else _html(line))
            + "</FONT>"
            for size, colour, weight, line in _box_text(b)
        )
        out.append(
            f"  {dot_id(b.key)} [label=<{label}>, "
            f"{pos(b.cx, b.cy)}, width={inches(b.w)}, height={inches(b.h)}, "
            f'fillcolor="{fill}", color="{stroke}", style="{style}", '
            f"penwidth={2 if b.center else 1}];"
        )
    # Exactly one DOT edge per lineage edge. A frame's one arrow is drawn by its
    # first member's edge, pinned (pos) to end at the frame; the others are invisible.
    drawn_by: dict[tuple[str, str, str], Arrow] = {}
    for a in lay.arrows:
        relationship = a.label if a.frame is None else lay.frames[a.frame].relationship
        drawn_by[(a.parent, a.child, relationship)] = a
    labels = arrow_labels(lay)
    index = {id(a): i for i, a in enumerate(lay.arrows)}
    for e in lay.edges:
        arrow = drawn_by.pop((e.parent, e.child, e.relationship), None)
        if arrow is None:
            # folded into a frame's arrow; kept so the text lists every edge
            label = _html(shorten(e.relationship, NAME_CHARS))
            out.append(f"  {dot_id(e.parent)} -> {dot_id(e.child)} [label=<{label}>, style=invis];")
            continue
        attributes = [f'pos="{_spline(arrow, height)}"', "headclip=false"]
        i = index[id(arrow)]
        if i in labels:
            lx, ly, text = labels[i]
            # no background behind DOT labels: beside the line instead of on it
            lx += _text_width(text, 10) / 2 + 5
            attributes += [f"label=<{_html(text)}>", f'lp="{_n(lx)},{_n(height - ly)}"']
        if arrow.bundled:
            attributes.append("penwidth=1.6")
        out.append(f"  {dot_id(e.parent)} -> {dot_id(e.child)} [{', '.join(attributes)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _spline(a: Arrow, height: float) -> str:
    """A straight edge as Graphviz's ``pos``: the arrow tip, then a 4-point
    B-spline ending where the arrowhead starts."""
    length = math.hypot(a.x2 - a.x1, a.y2 - a.y1) or 1.0
    head = min(7.0, length / 2)  # arrowsize 0.7 x 10 points
    ex = a.x2 - (a.x2 - a.x1) * head / length
    ey = a.y2 - (a.y2 - a.y1) * head / length
    points = [(a.x1 + (ex - a.x1) * t / 3, a.y1 + (ey - a.y1) * t / 3) for t in range(4)]
    return f"e,{_n(a.x2)},{_n(height - a.y2)} " + " ".join(
        f"{_n(x)},{_n(height - y)}" for x, y in points
    )


PNG_DPI = 96


def require_dot() -> str:
    """Path of Graphviz's ``dot``, or an error naming what to install."""
    exe = shutil.which("dot")
    if exe is None:
        raise RendererUnavailableError(
            "--format png needs the Graphviz `dot` program, which is not installed: "
            "install Graphviz (apt install graphviz, brew install graphviz) "
            "or use --format svg"
        )
    return exe


def render_png(lay: Layout, *, dot_program: str | None = None) -> bytes:
    """The layout as PNG, drawn by Graphviz (``dot``) with every node pinned."""
    exe = dot_program or require_dot()
    done = subprocess.run(
        [exe, "-Knop2", f"-Gdpi={PNG_DPI}", "-Tpng"],
        input=to_dot(lay).encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.startswith(b"\x89PNG\r\n\x1a\n"):
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RendererUnavailableError(
            f"Graphviz dot failed (exit code {done.returncode}): "
            f"{detail[-1] if detail else 'no PNG written'}"
        )
    return done.stdout
