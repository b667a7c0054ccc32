"""The interfaces: the ``regul`` command line (Typer) and, later, the HTTP API and web desk.

They call the engine's functions and only translate: options to commands, errors to exit codes
and one-line messages, views to tables or JSON. The engine never imports this package.
"""

__all__: list[str] = []
