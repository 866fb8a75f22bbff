"""Pictures of a real plate from the seeded database: SVG everywhere, PNG through Graphviz."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tapdb_core import graph_layout, instances, lineage
from tests.acceptance.conftest import Cli, assert_one_line_error, isolated_env, server_vars

PLATE96 = "container/plate/fixed-plate-96/1.0/"
SVG = "{http://www.w3.org/2000/svg}"


def parse_xml(text: str | bytes) -> ET.Element:
    # our own output: the test is that it parses (S314 is about hostile documents)
    return ET.fromstring(text)  # noqa: S314


def need_dot() -> str:
    """Graphviz's ``dot``. CI installs it (.ci/run), so there its absence fails;
    elsewhere the test is skipped and says which package to install."""
    exe = shutil.which("dot")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI must have Graphviz `dot` (apt-get install graphviz): see .ci/run")
        pytest.skip(
            "Graphviz `dot` is not installed: install the graphviz package (apt install graphviz)"
        )
    return exe


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def demo_plate(engine: Engine, name: str = "demo plate") -> tuple[lineage.Graph, dict[str, str]]:
    """The depth-1 graph of a new 96-well plate, and its wells' EUIDs by address."""
    with engine.begin() as conn:
        tree = instances.create_tree(conn, PLATE96, name)
        graph = lineage.graph(conn, tree.root.euid, depth=1)
    wells = {i.properties["address"]: i.euid for i in tree.instances[1:]}
    assert len(wells) == 96
    return graph, wells


def test_plate_svg_is_a_readable_grid(seeded_engine: Engine) -> None:
    graph, wells = demo_plate(seeded_engine)
    plate = next(n for n in graph.nodes if n.name == "demo plate")
    lay = graph.layout(center=plate.euid)
    a1, a12, h1, h12 = (lay.box(wells[a]) for a in ("A1", "A12", "H1", "H12"))
    assert a1.y == a12.y < h1.y == h12.y
    assert a1.x == h1.x < a12.x == h12.x
    assert lay.box(plate.euid).center

    svg = parse_xml(graph.to_svg(center=plate.euid))
    width, height = float(svg.attrib["width"]), float(svg.attrib["height"])
    # was 26,660 pt wide with every well on one rank
    assert 400 < width < 2000 and height < 1200
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    for euid in (plate.euid, wells["A1"], wells["H12"]):
        assert euid in texts
    assert "contains \u00d7 96" in texts
    assert len(svg.findall(f"{SVG}line")) == 1  # one arrow to the grid, not 96


def test_plate_png_fits_a_screen(seeded_engine: Engine) -> None:
    dot = need_dot()
    graph, _ = demo_plate(seeded_engine)
    png = graph.to_png()
    width, height = png_size(png)
    assert 500 < width < 2000 and 300 < height < 1200
    # the DOT text draws the same picture with a plain `dot -Tpng`
    done = subprocess.run(
        [dot, "-Tpng"], input=graph.to_dot().encode(), capture_output=True, check=True
    )
    assert done.stdout == png
    # ... and lists every lineage edge once
    assert graph.to_dot().count("->") == 96


def test_png_without_graphviz_says_what_to_install(
    seeded_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph, _ = demo_plate(seeded_engine)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(graph_layout.RendererUnavailableError, match="apt install graphviz"):
        graph.to_png()


def test_hostile_names_survive_svg_and_graphviz(seeded_engine: Engine) -> None:
    name = "P <b>&amp; \"q\" 's' \\"
    graph, wells = demo_plate(seeded_engine, name)
    svg = parse_xml(graph.to_svg())
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    assert name in texts
    dot = need_dot()
    done = subprocess.run(
        [dot, "-Tsvg"], input=graph.to_dot().encode(), capture_output=True, check=True
    )
    drawn = parse_xml(done.stdout)
    drawn_texts = ["".join(t.itertext()) for t in drawn.iter(f"{SVG}text")]
    assert name in drawn_texts and wells["H12"] in drawn_texts


def test_cli_draws_svg_without_graphviz_and_png_with_it(
    seeded_engine: Engine, tmp_path: Path
) -> None:
    graph, wells = demo_plate(seeded_engine)
    plate = next(n.euid for n in graph.nodes if n.name == "demo plate")
    home, work, no_dot = tmp_path / "home", tmp_path / "work", tmp_path / "no-dot"
    for d in (home, work, no_dot):
        d.mkdir()
    cli = Cli(isolated_env(home), work)
    url = seeded_engine.url
    env = {**server_vars(url, "dev", str(url.database)), "TAPDB_ENV": "dev"}
    svg_file, png_file = tmp_path / "plate.svg", tmp_path / "plate.png"

    base = ["lineage", "graph", plate, "--depth", "1", "--format"]
    svg_run = cli(*base, "svg", "-o", str(svg_file), env={**env, "PATH": str(no_dot)})
    assert svg_run.returncode == 0, svg_run.stderr
    svg = parse_xml(svg_file.read_bytes())
    assert float(svg.attrib["width"]) < 2000
    assert wells["H12"] in ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]

    png_missing = cli(*base, "png", "-o", str(png_file), env={**env, "PATH": str(no_dot)})
    assert png_missing.returncode == 1
    assert_one_line_error(png_missing, "Graphviz", "apt install graphviz")
    assert not png_file.exists()

    need_dot()
    png_run = cli(*base, "png", "-o", str(png_file), env=env)
    assert png_run.returncode == 0, png_run.stderr
    assert png_file.read_bytes() == graph.to_png(center=plate)
