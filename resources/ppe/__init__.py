"""PPE stocks (issue 12; MINSANTE N°143, ARS Occitanie 24/03/2020): the seven items and their
units, the weekly stock report of each establishment, weeks of cover and the alert rules that
open a ``ppe`` case by themselves, the holders' ledgers (a GHT's deliveries, the ARS's regional
reserve, SpF's national strategic stock) and the shipments of a PPE case.

- ``resources.ppe.items``: the items, sub-types and units (data, French labels);
- ``resources.ppe.rules``: alert rules (data, per scope and item) and weeks of cover (pure);
- ``resources.ppe.stock``: the decisions (report, movements, case effects) and the obligation;
- ``resources.ppe.files``: CSV/XLSX reports, checked line by line before anything is written;
- ``resources.ppe.seed004``: Occitanie's GHT deliveries of 20-21 March 2020 and its reserve;
- ``resources.ppe.service``: what the interfaces call (``PpeService``).
"""
