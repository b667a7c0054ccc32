"""Notices in the style of MARS and MINSANTE messages: rendering, recipients, outbox, delivery.

Empty so far: the notices issue fills it (templates in ``templates/``, an outbox table written
in the transition's transaction, a dispatcher with retries). The engine's runner is where the
outbox rows will be queued.
"""

__all__: list[str] = []
