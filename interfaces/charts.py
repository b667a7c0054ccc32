"""Charts as inline SVG, rendered on the server: bars by region, a weekly line, a map of France.

No JavaScript and no ``style`` attribute (the desk's Content-Security-Policy allows neither):
colours are SVG presentation attributes (``fill=``), every shape has its figure written beside
it as text, and each chart has a ``<title>`` and ``role="img"`` with an ``aria-label``; the page
also gives the same figures in a table. The map is a tile grid (one square per region, laid out
roughly as the country, the five overseas regions on a row of their own): nothing is downloaded
and nothing depends on a geometry file. Every text goes through ``markupsafe.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from markupsafe import Markup, escape

__all__ = [
    "MISSING",
    "PALETTE",
    "TILES",
    "bars",
    "classes",
    "colour",
    "france",
    "line",
    "number",
    "shade",
]

# Five steps of one hue (ColorBrewer "Blues", readable in greyscale); light = low.
PALETTE = ("#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c")
MISSING = "#f0f0f0"  # a region with no figure: grey, and "—" written on it
DARK_TEXT, LIGHT_TEXT = "#111111", "#ffffff"
# (column, row) of each region on the grid; the overseas regions on the last row.
TILES: dict[str, tuple[int, int]] = {
    "HDF": (3, 0),
    "BRE": (0, 1),
    "NOR": (1, 1),
    "IDF": (2, 1),
    "GES": (3, 1),
    "PDL": (1, 2),
    "CVL": (2, 2),
    "BFC": (3, 2),
    "NAQ": (1, 3),
    "ARA": (2, 3),
    "OCC": (1, 4),
    "PAC": (2, 4),
    "COR": (3, 4),
    "GUA": (0, 6),
    "MTQ": (1, 6),
    "GUF": (2, 6),
    "REU": (3, 6),
    "MYT": (4, 6),
}
TILE, GAP = 76, 6


def number(value: float | int | None) -> str:
    """A figure as the French write it: 1 234,5 (a narrow no-break space between thousands)."""
    if value is None:
        return "—"
    text = f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
    return text.replace(",", "\u202f").replace(".", ",")


def classes(values: Sequence[float], steps: int = len(PALETTE)) -> list[float]:
    """Upper bounds of ``steps`` equal-width classes from 0 (or the minimum) to the maximum;
    whole numbers when every value is one (counts: no class « 0,6 à 1,2 »)."""
    if not values:
        return []
    low, high = min(0.0, *values), max(values)
    if high <= low:
        return [high]
    width = (high - low) / steps
    bounds = [low + width * (i + 1) for i in range(steps)]
    if all(float(v).is_integer() for v in values):
        bounds = sorted({float(math.ceil(b - 1e-9)) for b in bounds})
    return bounds


def shade(index: int, count: int) -> str:
    """The colour of class ``index`` of ``count``: spread over the palette, darkest last."""
    if count <= 1:
        return PALETTE[-1] if count == 1 else MISSING
    return PALETTE[round(index * (len(PALETTE) - 1) / (count - 1))]


def colour(value: float | None, bounds: Sequence[float]) -> str:
    if value is None or not bounds:
        return MISSING
    if len(bounds) == 1:  # every region the same: light for nothing, mid-tone otherwise
        return PALETTE[0] if value <= 0 else PALETTE[2]
    for index, bound in enumerate(bounds):
        if value <= bound:
            return shade(index, len(bounds))
    return PALETTE[-1]


def _text_on(fill: str) -> str:
    return LIGHT_TEXT if fill in PALETTE[3:] else DARK_TEXT


def _svg(width: int, height: int, title: str, body: list[str]) -> Markup:
    label = escape(title)
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-label="{label}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" font-family="sans-serif" font-size="12">'
        f"<title>{label}</title>{''.join(body)}</svg>"
    )


def bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 560,
    label_width: int = 170,
) -> Markup:
    """Horizontal bars, one per (label, value), the value written at the end of each bar."""
    row, top = 22, 8
    height = top * 2 + row * max(1, len(items))
    high = max((v for _, v in items), default=0) or 1
    room = width - label_width - 70
    body = []
    if not items:
        body.append(f'<text x="8" y="{top + 14}" fill="{DARK_TEXT}">Aucune donnée</text>')
    for index, (label, value) in enumerate(items):
        y = top + index * row
        length = max(0.0, room * value / high)
        body.append(
            f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end" '
            f'fill="{DARK_TEXT}">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" '
            f'fill="{PALETTE[3]}"><title>{escape(label)} : {number(value)}</title></rect>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + 15}" '
            f'fill="{DARK_TEXT}">{number(value)}</text>'
        )
    return _svg(width, height, title, body)


def line(
    points: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 560,
    height: int = 200,
) -> Markup:
    """A line through (period, value) points, each point's value written above it."""
    left, right, top, bottom = 40, 36, 24, 36
    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        f'stroke="{DARK_TEXT}" stroke-width="1"/>'
    ]
    if not points:
        body.append(f'<text x="{left}" y="{top + 20}" fill="{DARK_TEXT}">Aucune donnée</text>')
        return _svg(width, height, title, body)
    high = max(v for _, v in points) or 1
    span = max(1, len(points) - 1)
    inner_w, inner_h = width - left - right, height - top - bottom
    xy = [
        (left + inner_w * i / span if len(points) > 1 else left + inner_w / 2,
         height - bottom - inner_h * v / high)
        for i, (_, v) in enumerate(points)
    ]  # fmt: skip
    body.append(
        '<polyline fill="none" stroke="'
        + PALETTE[4]
        + '" stroke-width="2" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        + '"/>'
    )
    for (label, value), (x, y) in zip(points, xy, strict=True):
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{PALETTE[4]}">'
            f"<title>{escape(label)} : {number(value)}</title></circle>"
            f'<text x="{x:.1f}" y="{y - 8:.1f}" text-anchor="middle" '
            f'fill="{DARK_TEXT}">{number(value)}</text>'
            f'<text x="{x:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
            f'font-size="10" fill="{DARK_TEXT}">{escape(label)}</text>'
        )
    return _svg(width, height, title, body)


def france(
    measure: Mapping[str, float],
    *,
    title: str,
    names: Mapping[str, str],
    href: Callable[[str], str | None] = lambda code: f"/situation?region={code}",
    unit: str = "",
) -> Markup:
    """The regions as tiles coloured by ``measure``, each with its code and figure written on
    it, a link to its page (``href`` None: no link), and a legend of the classes."""
    bounds = classes([float(v) for v in measure.values()])
    cols = 1 + max(c for c, _ in TILES.values())
    rows = 1 + max(r for _, r in TILES.values())
    legend_w = 170
    width = cols * (TILE + GAP) + legend_w
    height = rows * (TILE + GAP) + 4
    body = [
        f'<text x="0" y="{5 * (TILE + GAP) + 40}" font-size="12" '
        f'fill="{DARK_TEXT}">Outre-mer</text>'
    ]
    for code, (col, row) in TILES.items():
        value = measure.get(code)
        fill = colour(value, bounds)
        x, y = col * (TILE + GAP), row * (TILE + GAP)
        name = names.get(code, code)
        what = f"{name} : {number(value)}{' ' + unit if unit and value is not None else ''}"
        tile = (
            f'<rect x="{x}" y="{y}" width="{TILE}" height="{TILE}" rx="6" fill="{fill}" '
            f'stroke="#555555" stroke-width="1"/>'
            f'<text x="{x + TILE / 2}" y="{y + 28}" text-anchor="middle" font-weight="bold" '
            f'fill="{_text_on(fill)}">{escape(code)}</text>'
            f'<text x="{x + TILE / 2}" y="{y + 50}" text-anchor="middle" font-size="14" '
            f'fill="{_text_on(fill)}">{number(value)}</text>'
        )
        link = href(code)
        if link is None:
            body.append(f"<g><title>{escape(what)}</title>{tile}</g>")
        else:
            body.append(
                f'<a href="{escape(link)}" aria-label="{escape(what)}">'
                f"<title>{escape(what)}</title>{tile}</a>"
            )
    lx = cols * (TILE + GAP) + 10
    body.append(f'<text x="{lx}" y="14" font-weight="bold" fill="{DARK_TEXT}">Légende</text>')
    values = [float(v) for v in measure.values()]
    low = min(0.0, *values) if values else 0.0
    whole = all(v.is_integer() for v in values)
    for index, bound in enumerate(bounds):
        y = 24 + index * 24
        start = low if index == 0 else bounds[index - 1] + (1 if whole else 0)
        span = (
            number(bound)
            if whole and start >= bound
            else f"{number(round(start, 1))} à {number(round(bound, 1))}"
        )
        body.append(
            f'<rect x="{lx}" y="{y}" width="18" height="18" fill="{colour(bound, bounds)}" '
            f'stroke="#555555" stroke-width="1"/>'
            f'<text x="{lx + 24}" y="{y + 14}" fill="{DARK_TEXT}">{span}</text>'
        )
    y = 24 + len(bounds) * 24
    body.append(
        f'<rect x="{lx}" y="{y}" width="18" height="18" fill="{MISSING}" stroke="#555555" '
        f'stroke-width="1"/><text x="{lx + 24}" y="{y + 14}" fill="{DARK_TEXT}">'
        "— : sans donnée</text>"
    )
    return _svg(width, height, title, body)
