"""Resources beside the cases: ledgers, period reports, obligations and the rules on them.

DESIGN.md "Resources": a quantity belongs to a holder and changes only by a recorded movement
(``engine.values.LedgerEntry``: an event in the holder's audit stream and its legs), balances
are kept in the same transaction and never go below zero (a database constraint); a report is
one version per holder and period; an expected report is an obligation row the sweep reminds.
The engine applies what these modules decide (``engine.unit_of_work.Tx.apply``) and imports
none of them: the composition root (``interfaces.app``) plugs them in.

- ``resources.periods``: ISO weeks and days, due times in Paris time;
- ``resources.obligations``: the kinds of expected reports, and the pure sweep of one;
- ``resources.ledger``: pure helpers (legs, a holder stream's replay, reconciliation);
- ``resources.service``: the service the interfaces call (report, balances, missing reports,
  the obligation sweep), one transaction per command.
"""
