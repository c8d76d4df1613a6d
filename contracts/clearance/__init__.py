"""The ``clearance`` contract: e-commerce import clearance in Korea.

See ``docs/contracts-clearance.md`` and ``/work/shared/workflows/customs-clearance.md``.
"""

from __future__ import annotations

# First: it picks the compiled build or the source before the modules below are imported.
from contracts.clearance import compiled

compiled.choose_once()

from contracts.clearance.contract import NAME, ClearanceContract  # noqa: E402
from contracts.clearance.privacy import buyer_payload, buyer_ref, is_valid_pccc  # noqa: E402

__all__ = ["NAME", "ClearanceContract", "buyer_payload", "buyer_ref", "compiled",
           "is_valid_pccc"]
