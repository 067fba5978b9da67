"""Evidence for auditors: the signed, hash-chained placement ledger (docs/audit.md).

``chain`` seals and verifies records (pure), ``entries`` says what a record holds (pure),
``store`` keeps the segments as ConfigMaps, ``keys`` the Ed25519 key, ``report`` renders the
auditor's HTML and CSV. The operator's side (what is recorded when) is ``controller.ledger``.
"""
