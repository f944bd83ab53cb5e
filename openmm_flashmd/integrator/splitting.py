"""The FlashMD splitting mini-language.

A splitting is a string of letters (spaces optional), read left to right, that
makes up one integrator step of length ``dt`` = the model's stride:

====  ===========================================================================
F     one FlashMD stride over the whole step (replaces the Hamiltonian flow)
E     energy filter: rescale velocities so that kinetic + potential energy equals
      its value before ``F`` (must directly follow ``F``)
O     Langevin Ornstein-Uhlenbeck velocity update over dt / (number of O)
B     Bussi stochastic velocity rescaling over dt / (number of B)
====  ===========================================================================

Examples: ``"F E"`` or ``"F"`` (NVE), ``"O F E O"`` / ``"O F O"`` (Langevin),
``"B F E B"`` (Bussi).
"""

from __future__ import annotations

from typing import List

LETTERS = {
    "F": "FlashMD stride over the whole step",
    "E": "energy filter after F",
    "O": "Langevin Ornstein-Uhlenbeck velocity update",
    "B": "Bussi stochastic velocity rescaling",
}
THERMOSTAT_LETTERS = {"O", "B"}


class SplittingError(ValueError):
    """A splitting string the integrator cannot run."""


def parse_splitting(splitting: str) -> List[str]:
    """Validate ``splitting`` and return its letters in order."""
    letters = [c for c in splitting.upper() if not c.isspace()]
    unknown = sorted({c for c in letters if c not in LETTERS})
    if unknown:
        allowed = "; ".join(f"{k} = {v}" for k, v in LETTERS.items())
        raise SplittingError(f"splitting {splitting!r} has unknown letters {unknown}; allowed: {allowed}")
    if letters.count("F") != 1:
        raise SplittingError(f"splitting {splitting!r} must contain exactly one F (one stride per step)")
    if letters.count("E") > 1:
        raise SplittingError(f"splitting {splitting!r} has more than one E")
    if "E" in letters and (letters.index("E") == 0 or letters[letters.index("E") - 1] != "F"):
        raise SplittingError(f"splitting {splitting!r}: E (energy filter) must directly follow F")
    if "O" in letters and "B" in letters:
        raise SplittingError(f"splitting {splitting!r} mixes Langevin (O) and Bussi (B) thermostats")
    return letters


def default_splitting(thermostated: bool) -> str:
    """The recommended splitting: Langevin with energy filter, or NVE with filter."""
    return "O F E O" if thermostated else "F E"
