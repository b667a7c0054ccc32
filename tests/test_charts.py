"""interfaces/charts.py: inline SVG that parses, says its figures in text, and obeys the CSP."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interfaces import charts

SVG = "{http://www.w3.org/2000/svg}"
NAMES = {"OCC": "Occitanie", "IDF": "Île-de-France", "GUA": "Guadeloupe"}


def parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def no_style_no_script(root: ET.Element) -> None:
    for element in root.iter():
        assert "style" not in element.attrib, element.tag
        assert not element.tag.endswith("script")
        assert not any(name.startswith("on") for name in element.attrib)


def test_number_is_written_the_french_way() -> None:
    assert charts.number(1234567) == "1\u202f234\u202f567"
    assert charts.number(2.5) == "2,5"
    assert charts.number(3.0) == "3"
    assert charts.number(None) == "—"


def test_classes_and_colours() -> None:
    bounds = charts.classes([0, 10])
    assert bounds == [2, 4, 6, 8, 10]
    assert charts.colour(0, bounds) == charts.PALETTE[0]
    assert charts.colour(10, bounds) == charts.PALETTE[-1]
    assert charts.colour(5, bounds) == charts.PALETTE[2]
    assert charts.colour(None, bounds) == charts.MISSING
    assert charts.classes([]) == []
    assert charts.classes([0, 0]) == [0]
    assert charts.colour(0, [0]) == charts.PALETTE[0]


def test_bars_write_each_label_and_value() -> None:
    root = parse(charts.bars([("OCC Occitanie", 12), ("IDF Île-de-France", 3)], title="Cas"))
    assert root.get("role") == "img"
    assert root.get("aria-label") == "Cas"
    assert root.find(f"{SVG}title").text == "Cas"  # type: ignore[union-attr]
    words = texts(root)
    assert "OCC Occitanie" in words
    assert "12" in words
    assert "3" in words
    widths = [float(r.get("width", 0)) for r in root.iter(f"{SVG}rect")]
    assert widths[0] > widths[1] > 0  # proportional
    no_style_no_script(root)


def test_empty_charts_say_so() -> None:
    assert "Aucune donnée" in texts(parse(charts.bars([], title="x")))
    assert "Aucune donnée" in texts(parse(charts.line([], title="x")))


def test_line_has_a_point_and_a_label_per_period() -> None:
    points = [("2026-W45", 1.0), ("2026-W46", 4.0), ("2026-W47", 2.0)]
    root = parse(charts.line(points, title="Par semaine"))
    assert len(list(root.iter(f"{SVG}circle"))) == 3
    words = texts(root)
    assert {"2026-W45", "2026-W46", "2026-W47", "1", "4", "2"} <= set(words)
    ys = [float(c.get("cy", 0)) for c in root.iter(f"{SVG}circle")]
    assert ys[1] < ys[0]
    assert ys[1] < ys[2]
    no_style_no_script(root)
    single = parse(charts.line([("2026-W47", 0.0)], title="x"))
    assert len(list(single.iter(f"{SVG}circle"))) == 1


def test_map_has_every_region_a_figure_a_link_and_a_legend() -> None:
    root = parse(
        charts.france(
            {"OCC": 7, "IDF": 2},
            title="Carte",
            names=NAMES,
            href=lambda code: f"/situation?region={code}" if code != "GUA" else None,
        )
    )
    no_style_no_script(root)
    links = {a.get("href") for a in root.iter(f"{SVG}a")}
    assert "/situation?region=OCC" in links
    assert "/situation?region=GUA" not in links  # href None: no link
    assert len(links) == len(charts.TILES) - 1
    words = texts(root)
    for code in charts.TILES:  # mainland and overseas, each written
        assert code in words
    for code in ("GUA", "MTQ", "GUF", "REU", "MYT"):
        assert code in charts.TILES
    assert "7" in words
    assert "Légende" in words
    assert "— : sans donnée" in words
    assert "Outre-mer" in words
    labels = {a.get("aria-label") for a in root.iter(f"{SVG}a")}
    assert "Occitanie : 7" in labels
    fills = {
        r.get("fill")
        for a in root.iter(f"{SVG}a")
        for r in a.iter(f"{SVG}rect")
        if a.get("href") == "/situation?region=OCC"
    }
    assert fills == {charts.PALETTE[-1]}  # the highest value: the darkest step


@given(
    st.lists(st.tuples(st.text(max_size=30), st.floats(min_value=0, max_value=1e9)), max_size=20)
)
def test_any_label_and_value_make_valid_svg(items: list[tuple[str, float]]) -> None:
    clean = [("".join(ch for ch in label if ch.isprintable()), value) for label, value in items]
    no_style_no_script(parse(charts.bars(clean, title="<script>x</script>")))
    no_style_no_script(parse(charts.line(clean, title="t")))


@pytest.mark.parametrize("hostile", ['"><script>alert(1)</script>', "javascript:alert(1)"])
def test_names_and_links_are_escaped(hostile: str) -> None:
    root = parse(charts.france({"OCC": 1}, title=hostile, names={"OCC": hostile}))
    no_style_no_script(root)
    assert root.get("aria-label") == hostile


def test_counts_get_whole_classes_spread_over_the_palette() -> None:
    bounds = charts.classes([1, 3])
    assert bounds == [1, 2, 3]
    assert charts.colour(3, bounds) == charts.PALETTE[-1]
    assert charts.colour(1, bounds) == charts.PALETTE[0]
    assert charts.colour(5, [5]) == charts.PALETTE[2]
    legend = texts(parse(charts.france({"OCC": 3, "IDF": 1}, title="t", names={})))
    assert "0 à 1" in legend
    assert "2" in legend
    assert "3" in legend
