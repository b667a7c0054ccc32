"""Alert rules on weeks of cover, and weeks of cover themselves (pure).

Weeks of cover = stock on hand ÷ the crisis weekly consumption: the one the establishment
declared (kept from its earlier reports when it declares none this week), else estimated from
the highest weekly consumption of its last 8 reports, and flagged so. An alert rule says, for a
scope (national, a region, an establishment) and an item, under how many weeks the stock is
short (``threshold``, 3 by default: the security stock of MINSANTE N°143), critical
(``critical``, 1) and what happens then (``case``: a ``ppe`` case opened by the rule;
``notify``: a notice to the ARS). Rules are data (``data/alert_rules.csv``, or the file the
``ppe_alert_rules`` setting names).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from engine.errors import InputError
from resources.ppe.items import LEDGER_ITEMS

__all__ = ["AlertRule", "Cover", "RuleBook", "cover", "load_rules", "to_rebuild"]

DEFAULT_FILE = Path(__file__).with_name("data") / "alert_rules.csv"
HISTORY_WEEKS = 8
SCOPES = ("establishment", "region", "national")
ACTIONS = ("case", "notify")


@dataclass(frozen=True)
class AlertRule:
    scope: str
    code: str | None
    item: str  # an item, or * for every item
    threshold: float = 3.0
    critical: float = 1.0
    actions: tuple[str, ...] = ("case",)

    def level(self, weeks: float | None) -> str:
        """ok | low (under the threshold) | critical (under the critical level)."""
        if weeks is None:
            return "ok"
        if weeks < self.critical:
            return "critical"
        return "low" if weeks < self.threshold else "ok"


DEFAULT_RULE = AlertRule("national", None, "*")


@dataclass(frozen=True)
class RuleBook:
    rules: tuple[AlertRule, ...]

    def rule(self, item: str, holder: str, region: str | None) -> AlertRule:
        """The most precise rule for ``item`` at ``holder`` (of ``region``)."""
        best: tuple[int, AlertRule] | None = None
        for rule in self.rules:
            if rule.item not in (item, "*"):
                continue
            if rule.scope == "establishment" and rule.code != holder:
                continue
            if rule.scope == "region" and rule.code != region:
                continue
            rank = SCOPES.index(rule.scope) * 2 + (rule.item == "*")
            if best is None or rank < best[0]:
                best = (rank, rule)
        return best[1] if best else DEFAULT_RULE


def parse_rules(lines: Iterable[str], *, source: str) -> RuleBook:
    rows = csv.DictReader(line for line in lines if line.strip() and not line.startswith("#"))
    rules: list[AlertRule] = []
    for number, row in enumerate(rows, 2):
        try:
            scope = (row.get("scope") or "").strip()
            code = (row.get("code") or "").strip() or None
            item = (row.get("item") or "*").strip()
            actions = tuple((row.get("action") or "case").split())
            threshold = float(row.get("threshold") or 3)
            critical = float(row.get("critical") or 1)
        except ValueError:
            raise _bad(source, number, "threshold and critical are numbers of weeks") from None
        if scope not in SCOPES or (scope != "national" and not code):
            raise _bad(source, number, f"scope is one of {', '.join(SCOPES)}, with a code")
        if item != "*" and item not in LEDGER_ITEMS:
            raise _bad(source, number, f"unknown item {item!r}")
        if not actions or any(a not in ACTIONS for a in actions):
            raise _bad(source, number, "action is case, notify or 'case notify'")
        if not 0 <= critical <= threshold:
            raise _bad(source, number, "0 <= critical <= threshold")
        rules.append(AlertRule(scope, code, item, threshold, critical, actions))
    return RuleBook(tuple(rules))


def _bad(source: str, line: int, what: str) -> InputError:
    return InputError(
        f"alert rules {source}, line {line}: {what}",
        why="ppe_bad_rule", source=source, line=line, what=what,
    )  # fmt: skip


@cache
def load_rules(path: str = "") -> RuleBook:
    file = Path(path) if path else DEFAULT_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"alert rules file {file} cannot be read: {exc}", why="ppe_bad_rule",
            source=str(file), line=0, what=str(exc),
        ) from None  # fmt: skip
    return parse_rules(text.splitlines(), source=str(file))


@dataclass(frozen=True)
class Cover:
    weeks: float | None  # None: no consumption known
    crisis: int | None  # the crisis weekly consumption used
    source: str  # declared | kept | estimated | none

    @property
    def estimated(self) -> bool:
        return self.source == "estimated"


def cover(on_hand: int, declared: int | None, kept: int | None, consumed: Sequence[int]) -> Cover:
    """Weeks of cover of ``on_hand``: the declared crisis consumption, else the one kept from
    earlier reports, else the highest of ``consumed`` (this week's and the last weeks')."""
    if declared:
        crisis, source = declared, "declared"
    elif kept:
        crisis, source = kept, "kept"
    else:
        highest = max((c for c in consumed[:HISTORY_WEEKS] if c), default=0)
        if not highest:
            return Cover(None, None, "none")
        crisis, source = highest, "estimated"
    return Cover(round(on_hand / crisis, 2), crisis, source)


def to_rebuild(on_hand: int, crisis: int | None, weeks: float) -> int:
    """The quantity that brings ``on_hand`` back to ``weeks`` of crisis consumption."""
    if not crisis:
        return 0
    return max(0, math.ceil(weeks * crisis) - on_hand)
