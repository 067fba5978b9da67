"""The A-E label: energy per request (model + hardware) and carbon per request (adds the zone).

Why this module exists: a "nutri-score" for AI requests lets a team compare a model on a pool
with another at a glance. Two scales, each four upper bounds (A, B, C, D; above D is E):

- energy: GPU Wh per request, without PUE, so it grades the model and the hardware only;
- carbon: gCO2e per request with PUE, the grid intensity of the pool's zone and embodied
  emissions, so the same model on the same GPU grades better on a low-carbon grid.

Default bounds are half-decades (x ~3.16) placed over published ranges (docs/energy.md cites them):
the AI Energy Score text-generation leaderboard spans about 0.001 to 19 Wh per query; Google
reported 0.24 Wh and 0.03 gCO2e for a median Gemini text prompt (2025), OpenAI 0.34 Wh for an
average ChatGPT query, Epoch AI about 0.3 Wh for GPT-4o. So a typical chat answer sits around C
for energy, and B/C/D for carbon on a 50/250/400 gCO2e/kWh grid. Both scales are configurable.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Sequence

__all__ = ["DEFAULT_CARBON_SCALE", "DEFAULT_ENERGY_SCALE", "Grade", "Scale", "grade"]


class Grade(enum.StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"

    @property
    def rank(self) -> int:
        """1 for A .. 5 for E (the value of the ``greenplace_request_grade`` metric)."""
        return "ABCDE".index(self.value) + 1


@dataclasses.dataclass(frozen=True, slots=True)
class Scale:
    """Upper bounds (inclusive) of grades A, B, C and D, in ``unit`` per request."""

    name: str
    unit: str
    bounds: tuple[float, float, float, float]

    def __post_init__(self) -> None:
        if len(self.bounds) != 4 or any(not 0 < a < b for a, b in itertools.pairwise(self.bounds)):
            raise ValueError(
                f"scale {self.name}: bounds {self.bounds} must be four increasing positive "
                "numbers (upper bounds of A, B, C, D)"
            )

    @classmethod
    def of(cls, name: str, unit: str, bounds: Sequence[float]) -> Scale:
        """Build from configuration (a list), checking there are four bounds."""
        values = tuple(float(b) for b in bounds)
        if len(values) != 4:
            raise ValueError(f"scale {name}: {len(values)} bounds given, need 4 (A, B, C, D)")
        return cls(name, unit, (values[0], values[1], values[2], values[3]))


DEFAULT_ENERGY_SCALE = Scale("energy", "Wh/request", (0.03, 0.1, 0.3, 1.0))
DEFAULT_CARBON_SCALE = Scale("carbon", "gCO2e/request", (0.003, 0.01, 0.03, 0.1))


def grade(value: float, scale: Scale) -> Grade:
    """The grade of ``value`` on ``scale`` (a bound belongs to the better grade)."""
    for letter, bound in zip((Grade.A, Grade.B, Grade.C, Grade.D), scale.bounds, strict=True):
        if value <= bound:
            return letter
    return Grade.E
