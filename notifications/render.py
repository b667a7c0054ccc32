"""Rendering notices: one Jinja2 template per kind, a shared layout, plain text and HTML.

The same template source is rendered twice: once as text (no escaping) and once as HTML
(autoescaped, so a regulator's ``<script>`` in a reason shows as text). ``StrictUndefined``
makes a template that refers to a missing variable fail loudly (the test suite renders every
kind of every workflow against real cases). Rendering returns a value; sending is elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MID_STANDIN", "REF_STANDIN", "Rendered", "Renderer"]


# Stand-ins for the reference and Message-ID while rendering, replaced once the number is
# taken (private-use characters: no template escapes or produces them).
REF_STANDIN, MID_STANDIN = "\ue000REF\ue000", "\ue000MID\ue000"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str

    def with_reference(self, reference: str, message_id: str) -> Rendered:
        """The same notice with the stand-ins it was rendered with replaced by the real ones."""

        def fill(text: str) -> str:
            return text.replace(REF_STANDIN, reference).replace(MID_STANDIN, message_id)

        return Rendered(fill(self.subject), fill(self.text), fill(self.html))


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
        self._text = Environment(loader=loader, autoescape=False, **common)  # plain text
        self._html = Environment(loader=loader, autoescape=True, **common)

    def render(self, kind: str, context: dict[str, Any]) -> Rendered:
        text_template = self._text.get_template(f"{kind}.j2")
        objet_block = text_template.blocks["objet"]
        objet = "".join(objet_block(text_template.new_context({**context, "html": False})))
        text = text_template.render(**context, html=False)
        html = self._html.get_template(f"{kind}.j2").render(**context, html=True)
        return Rendered(subject=f"{context['reference']} : {objet.strip()}", text=text, html=html)
