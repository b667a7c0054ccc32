"""Jinja2 templates, shipped as package data so a wheel install finds them.

The notices issue adds one template per notice kind and a shared layout here.
"""

__all__: list[str] = []
