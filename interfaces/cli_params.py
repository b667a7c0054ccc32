"""Plain text and flag options of the command line, taken as given without pydantic.

Typer (0.29) coerces the value of every option of the command that runs through a pydantic
``TypeAdapter``, built on first use: importing pydantic and building the adapters costs a quarter
of ``import sqlalchemy`` at every start of ``regul`` (bench/startup.py), though most options are
plain strings that stay what the shell gave. ``install()`` hands Typer, for an option declared
``str`` or ``bool`` with no parser, path check or choices, a coercion that returns a value already
of that type as it is (what Typer's adapter returns for it) and asks Typer's own coercion for
anything else (a flag's value from an environment variable, bytes): same values, same errors.
Any other option (numbers, paths, choices, lists) keeps Typer's coercion.

It reaches into Typer's internals (pinned in pyproject.toml); if they move, ``install()`` does
nothing and only the speed is lost (tests/test_imports.py then fails on pydantic being loaded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["install"]


def install() -> None:
    """Give Typer's ``str`` and ``bool`` options the plain coercion (once per process)."""
    try:
        from typer import _coercion, core
        from typer._click import Context

        parameter = core._TyperParameter
        typers_own = parameter.get_runtime_param
        base = _coercion.RuntimeParam
    except (ImportError, AttributeError):  # another Typer: keep its coercion
        return
    if getattr(typers_own, "plain_options", False):
        return

    @dataclass(frozen=True)
    class PlainRuntimeParam(base):  # type: ignore[misc,valid-type]
        """A value already of the declared type is kept; anything else goes to Typer's own."""

        descriptor: Any = field(default=None, compare=False)
        typers: list[Any] = field(default_factory=list, compare=False)

        def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
            if type(value) is self.annotation:
                return value
            if not self.typers:  # built as Typer would have built it, on first need
                self.typers.append(_coercion.build_runtime_param(self.descriptor))
            return self.typers[0]._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            desc = self.type_descriptor
            if (
                desc.annotation in (str, bool)
                and desc.parameter_info.parser is None
                and not (desc.is_path or desc.is_choice or desc.is_file)
            ):
                self._runtime_param = PlainRuntimeParam(
                    parameter_info=desc.parameter_info,
                    annotation=desc.annotation,
                    descriptor=desc,
                )
        return typers_own(self)

    get_runtime_param.plain_options = True  # type: ignore[attr-defined]
    parameter.get_runtime_param = get_runtime_param  # type: ignore[method-assign]
