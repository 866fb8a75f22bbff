"""The picture layout: wells in their plate grid, wide fan-outs wrapped, text escaped."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import pytest

from tapdb_core import graph_layout as gl
from tapdb_core.graph_layout import EdgeIn, NodeIn

SVG = "{http://www.w3.org/2000/svg}"


def parse_xml(text: str | bytes) -> ET.Element:
    # our own output: the test is that it parses (S314 is about hostile documents)
    return ET.fromstring(text)  # noqa: S314


def plate(
    rows: str = "ABCDEFGH", cols: int = 12, *, by: str = "address"
) -> tuple[list[NodeIn], list[EdgeIn]]:
    """A plate CX-1 and one well per address, in shuffled order (the layout, not the
    input order, must put them in place)."""
    nodes = [NodeIn(key="CX-1", name="demo plate", kind="container/plate/fixed-plate-96")]
    wells = []
    for r, row in enumerate(rows):
        for c in range(cols):
            address = f"{row}{c + 1}"
            props: dict[str, object] = (
                {"address": address} if by == "address" else {"row_idx": r, "col_idx": c}
            )
            wells.append(NodeIn(key=f"W-{address}", name=f"demo plate_{address}", properties=props))
    random.Random(7).shuffle(wells)
    nodes += wells
    edges = [EdgeIn(parent="CX-1", child=w.key, relationship="contains") for w in wells]
    return nodes, edges


def rows_of(lay: gl.Layout, keys: list[str]) -> list[list[str]]:
    """Keys grouped by the y of their box, top to bottom."""
    by_y: dict[float, list[str]] = {}
    for k in keys:
        by_y.setdefault(lay.box(k).y, []).append(k)
    return [by_y[y] for y in sorted(by_y)]


@pytest.mark.parametrize("by", ["address", "indexes"])
def test_wells_sit_in_their_plate_grid(by: str) -> None:
    lay = gl.layout(*plate(by=by))
    a1, a12, h1, h12 = (lay.box(f"W-{a}") for a in ("A1", "A12", "H1", "H12"))
    assert a1.y == a12.y < h1.y == h12.y
    assert a1.x == h1.x < a12.x == h12.x
    # every well of a row on one line, columns in order 1..12
    row_b = sorted((lay.box(f"W-B{c}").x, c) for c in range(1, 13))
    assert [c for _, c in row_b] == list(range(1, 13))
    assert {lay.box(f"W-B{c}").y for c in range(1, 13)} == {lay.box("W-B1").y}
    assert len(rows_of(lay, [b.key for b in lay.boxes if b.cell])) == 8
    # the plate above its grid, and one arrow to the grid's frame instead of 96
    assert lay.box("CX-1").y + lay.box("CX-1").h < a1.y
    assert len(lay.frames) == 1 and len(lay.frames[0].members) == 96
    assert len(lay.arrows) == 1 and lay.arrows[0].label == "contains \u00d7 96"
    headers = {h.text for h in lay.frames[0].headers}
    assert {"1", "12", "A", "H"} <= headers and "13" not in headers and "I" not in headers


def test_plate_picture_fits_a_screen() -> None:
    lay = gl.layout(*plate())
    # PNG is drawn at 96 dpi from points: the demo plate stays under 2,000 px wide
    assert lay.width * gl.PNG_DPI / 72 < 2000
    assert lay.height * gl.PNG_DPI / 72 < 1200
    cells = [b for b in lay.boxes if b.cell]
    assert all(b.w >= 48 and b.h >= 20 for b in cells)  # legible, not a grey line
    svg = parse_xml(gl.to_svg(lay))
    assert float(svg.attrib["width"]) == pytest.approx(lay.width, abs=1)
    assert len(svg.findall(f"{SVG}line")) == 1
    # DOT keeps one edge per lineage edge: one drawn (to the frame), 95 invisible
    dot = gl.to_dot(lay)
    assert dot.count("->") == 96 and dot.count("style=invis") == 95


def test_384_well_plate_uses_16_rows_of_24() -> None:
    lay = gl.layout(*plate(rows="ABCDEFGHIJKLMNOP", cols=24))
    assert len(rows_of(lay, [b.key for b in lay.boxes if b.cell])) == 16
    assert lay.box("W-P24").x > lay.box("W-P1").x
    assert lay.width * gl.PNG_DPI / 72 < 2000


def test_partial_plate_keeps_the_plate_format() -> None:
    nodes, edges = plate()
    keep = {"CX-1", "W-A1", "W-H12"}
    nodes[0] = NodeIn(key="CX-1", name="p", properties={"rows": 8, "columns": 12})
    lay = gl.layout([n for n in nodes if n.key in keep], [e for e in edges if e.child in keep])
    a1, h12 = lay.box("W-A1"), lay.box("W-H12")
    assert h12.x > a1.x and h12.y > a1.y
    assert lay.frames[0].w > 10 * a1.w  # 12 columns wide, though only two wells


def test_thirty_children_without_addresses_wrap_into_rows_of_at_most_twelve() -> None:
    nodes = [NodeIn(key="CX-1", name="rack")]
    nodes += [NodeIn(key=f"CX-{100 + i}", name=f"tube {i}") for i in range(30)]
    edges = [EdgeIn(parent="CX-1", child=n.key, relationship="contains") for n in nodes[1:]]
    lay = gl.layout(nodes, edges)
    rows = rows_of(lay, [n.key for n in nodes[1:]])
    assert [len(r) for r in rows] == [12, 12, 6]
    # natural order: tube 2 before tube 10, left to right then top to bottom
    assert rows[0] == sorted(rows[0], key=lambda k: lay.box(k).x)
    assert sorted(rows[0], key=lambda k: lay.box(k).x)[:3] == ["CX-100", "CX-101", "CX-102"]
    assert lay.box("CX-111").y == lay.box("CX-100").y < lay.box("CX-112").y
    assert lay.width * gl.PNG_DPI / 72 < 2000
    assert [a.label for a in lay.arrows] == ["contains \u00d7 30"]


def test_a_wide_rank_of_unrelated_nodes_wraps_too() -> None:
    roots = [NodeIn(key=f"AX-{i}", name=f"owner {i}") for i in range(30)]
    child = NodeIn(key="CX-1", name="shared")
    edges = [EdgeIn(parent=r.key, child="CX-1", relationship="owns") for r in roots]
    lay = gl.layout([*roots, child], edges)
    rows = rows_of(lay, [r.key for r in roots])
    assert len(rows) >= 3 and all(len(r) <= gl.MAX_ROW for r in rows)
    assert lay.box("CX-1").y > max(lay.box(r.key).y for r in roots)
    assert len(lay.arrows) == 30  # different parents: nothing to bundle
    assert len(gl.arrow_labels(lay)) == 1  # ... but "owns" is printed once


def test_small_fan_outs_stay_plain_nodes_and_parents_come_first() -> None:
    nodes = [NodeIn(key=k, name=k) for k in ("A-1", "B-1", "C-1", "D-1")]
    edges = [
        EdgeIn(parent="A-1", child="B-1", relationship="generic"),
        EdgeIn(parent="B-1", child="C-1", relationship="generic"),
        EdgeIn(parent="A-1", child="C-1", relationship="generic"),
        EdgeIn(parent="C-1", child="D-1", relationship="derived_from"),
    ]
    lay = gl.layout(nodes, edges)
    ys = [lay.box(k).y for k in ("A-1", "B-1", "C-1", "D-1")]
    assert ys == sorted(ys) and len(set(ys)) == 4
    assert not lay.frames and len(lay.arrows) == 4


def test_duplicate_or_missing_addresses_fall_back_to_wrapping() -> None:
    nodes = [NodeIn(key="CX-1", name="p")]
    nodes += [NodeIn(key=f"W-{i}", name=f"w{i}", properties={"address": "A1"}) for i in range(14)]
    edges = [EdgeIn(parent="CX-1", child=n.key, relationship="contains") for n in nodes[1:]]
    lay = gl.layout(nodes, edges)
    assert [len(r) for r in rows_of(lay, [n.key for n in nodes[1:]])] == [12, 2]
    assert not lay.frames[0].headers


@pytest.mark.parametrize(
    ("props", "cell"),
    [
        ({"address": "A1"}, (0, 0)),
        ({"address": "H12"}, (7, 11)),
        ({"address": "p24"}, (15, 23)),
        ({"address": "AF48"}, (31, 47)),
        ({"address": "A01"}, (0, 0)),
        ({"address": "A0"}, None),
        ({"address": "A49"}, None),
        ({"address": "1A"}, None),
        ({"row_idx": 2, "col_idx": 3}, (2, 3)),
        ({"row_idx": True, "col_idx": 0}, None),
        ({"row_idx": -1, "col_idx": 0}, None),
        ({"address": 7}, None),
        ({}, None),
    ],
)
def test_grid_cell(props: dict[str, object], cell: tuple[int, int] | None) -> None:
    assert gl.grid_cell(props) == cell


HOSTILE = "a<b>&c \"d\" 'e' </text><script>x</script> \\ \x01\x7f\ufffe"


def test_names_are_escaped_in_svg() -> None:
    nodes = [
        NodeIn(key="CX-1", name=HOSTILE, kind='k<&">'),
        NodeIn(key="CX-2", name="child"),
    ]
    edges = [EdgeIn(parent="CX-1", child="CX-2", relationship='rel<&"')]
    svg_text = gl.to_svg(gl.layout(nodes, edges))
    assert "<script" not in svg_text and "</text><script" not in svg_text
    root = parse_xml(svg_text)  # well-formed XML despite the controls
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    assert gl.shorten(HOSTILE, gl.NAME_CHARS) in texts
    assert gl.shorten(HOSTILE, gl.NAME_CHARS).startswith('a<b>&c "d"')
    assert 'k<&">' in texts and 'rel<&"' in texts
    titles = ["".join(t.itertext()) for t in root.iter(f"{SVG}title")]
    assert any(t.startswith("CX-1 a<b>&c \"d\" 'e' </text><script>") for t in titles)
    assert "\x01" not in svg_text and "\x7f" not in svg_text and "\ufffe" not in svg_text


def test_names_are_escaped_in_dot() -> None:
    nodes = [NodeIn(key="CX-1", name=HOSTILE), NodeIn(key='Q"-\\', name="x")]
    edges = [EdgeIn(parent="CX-1", child='Q"-\\', relationship="a>b")]
    dot = gl.to_dot(gl.layout(nodes, edges))
    assert "<script" not in dot and "&lt;script&gt;" not in dot  # shortened away, or escaped
    assert "a&lt;b&gt;&amp;c &quot;d&quot; &#39;e&#39;" in dot
    assert "label=<a&gt;b>" in dot
    assert "\x01" not in dot
    # backslashes only inside HTML-like labels, where Graphviz expands nothing
    assert "<B>Q&quot;-\\</B>" in dot and '\\"' not in dot
    # a key cannot close its quoted ID early: no quote inside, none at the end
    ident = gl.dot_id('Q"-\\')
    assert ident.count('"') == 2 and ident.startswith('"') and ident.endswith('"')


def test_deleted_and_center_nodes_are_marked() -> None:
    nodes = [NodeIn(key="CX-1", name="a"), NodeIn(key="CX-2", name="b", deleted=True)]
    edges = [EdgeIn(parent="CX-1", child="CX-2", relationship="generic")]
    lay = gl.layout(nodes, edges, center="CX-1")
    assert lay.box("CX-1").center and not lay.box("CX-2").center
    assert lay.box("CX-2").deleted and "[deleted]" in lay.box("CX-2").title
    svg = gl.to_svg(lay)
    assert 'stroke-dasharray="4 3"' in svg and 'stroke-width="2"' in svg


def test_empty_graph_and_edges_to_unknown_nodes() -> None:
    lay = gl.layout([], [])
    assert lay.boxes == () and lay.width > 0
    parse_xml(gl.to_svg(lay))
    lay = gl.layout(
        [NodeIn(key="A-1", name="a")], [EdgeIn(parent="A-1", child="Z-9", relationship="x")]
    )
    assert lay.arrows == () and lay.edges == ()


def test_png_without_graphviz_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(gl.RendererUnavailableError, match=r"Graphviz.*apt install graphviz"):
        gl.render_png(gl.layout(*plate()))
