"""Rendering notices: one Jinja2 template per kind, a shared layout, plain text and HTML.

A notice is rendered from the facts stored with it (``notice.facts``, gathered in the
transaction of its event by ``notifications.outbox``), once, when it is sent
(``notifications.dispatcher``) or shown (``regul notices show``, the preview). The same
template source is rendered twice: once as text (no escaping) and once as HTML (autoescaped,
so a regulator's ``<script>`` in a reason shows as text). ``StrictUndefined`` makes a
template that refers to a missing variable fail loudly (the test suite renders every kind of
every workflow against real cases). Rendering returns a value; sending is elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

__all__ = ["Rendered", "Renderer", "bodies", "with_bodies"]


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(self) -> None:
        # Jinja2 loads with the first renderer, not with every command that imports the outbox
        from jinja2 import Environment, PackageLoader, StrictUndefined

        loader = PackageLoader("templates", "notices")
        common: dict[str, Any] = {
            "undefined": StrictUndefined,
            "keep_trailing_newline": True,
            "auto_reload": False,  # templates ship with the package: no freshness check per use
        }
        from notifications import french

        self._text = Environment(loader=loader, autoescape=False, **common)  # plain text
        self._html = Environment(loader=loader, autoescape=True, **common)
        for env in (self._text, self._html):
            env.filters.update(
                of=french.of, to=french.to, the=french.the, capital=french.capital,
                letterhead=french.letterhead, signature=french.signature,
            )  # fmt: skip
            env.globals.update(closing=french.CLOSING, series_titles=french.SERIES_TITLES)

    def render(self, kind: str, context: dict[str, Any]) -> Rendered:
        """``context``: a notice's facts with its ``reference`` and ``message_id``."""
        text = self._text.get_template(f"{kind}.j2").render(**context, html=False)
        html = self._html.get_template(f"{kind}.j2").render(**context, html=True)
        return Rendered(f"{context['reference']} : {context['objet']}", text, html)


_RENDERERS: list[Renderer] = []  # one per process, made on first use


def bodies(row: Any, renderer: Renderer | None = None) -> Rendered:
    """A stored notice as text and HTML: as sent if it was, else rendered from its facts."""
    if row.body_text or not row.facts:  # sent (or written before facts were stored)
        return Rendered(row.subject, row.body_text, row.body_html)
    if renderer is None:
        if not _RENDERERS:
            _RENDERERS.append(Renderer())
        renderer = _RENDERERS[0]
    recipients = row.recipients or {}
    context = {
        **row.facts,
        "reference": row.reference,
        "message_id": row.message_id,
        "pour_action": recipients.get("action", []),
        "pour_information": recipients.get("info", []),
    }
    rendered = renderer.render(row.kind, context)
    return Rendered(row.subject, rendered.text, rendered.html)


def with_bodies(row: Any, renderer: Renderer | None = None) -> Any:
    """The notice row with its ``body_text`` and ``body_html`` filled (rendered if need be)."""
    rendered = bodies(row, renderer)
    values = dict(row._mapping) if hasattr(row, "_mapping") else dict(vars(row))
    values.update(body_text=rendered.text, body_html=rendered.html)
    return SimpleNamespace(**values)
