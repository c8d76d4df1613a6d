"""Livestock traceability (축산물이력제): the ``livestock`` contract and its helpers.

* :mod:`.identifiers`: number formats and the pluggable cattle check-digit rule
* :mod:`.states`: every animal, carcass and lot state and transition, in one table
* :mod:`.rules`: thresholds (late report days, reading alert ranges, grades)
* :mod:`.contract`: :class:`LivestockContract`, the actions
* :mod:`.trace`: upstream/downstream walks for ``trace``, ``recall_scope`` and ``recall``
* :mod:`.epcis`: GS1 EPCIS 2.0 JSON-LD export
* :mod:`.scenario`: the Definition-of-done demo as data
"""

from __future__ import annotations

from .contract import ACTIONS, NAME, LivestockContract

__all__ = ["ACTIONS", "NAME", "LivestockContract"]
