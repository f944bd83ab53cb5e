"""Molecules of a frame as bodies: groups of equal size, whole across periodic boxes, centres of
mass, and molecules moved onto other centres (plain functions over arrays; nm, Da)."""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence

import numpy as np


def solvent_molecules(context) -> List[List[int]]:
    """The molecules of more than one atom of an OpenMM ``Context`` (``getMolecules()``: atoms joined
    by bonds or constraints) when it has at least two of them (a solvent), else an empty list."""
    several = [list(atoms) for atoms in context.getMolecules() if len(atoms) > 1]
    return several if len(several) > 1 else []


def groups(molecules: Sequence[Sequence[int]]) -> Iterator[np.ndarray]:
    """The molecules (lists of atom indices, e.g. ``Context.getMolecules()``) as ``[M, n]`` index
    arrays, one per molecule size ``n``, smallest first."""
    for size in sorted({len(atoms) for atoms in molecules}):
        yield np.array([list(atoms) for atoms in molecules if len(atoms) == size])


def whole(x: np.ndarray, box: Optional[np.ndarray]) -> np.ndarray:
    """Positions ``[F, M, n, 3]`` (nm) of ``M`` molecules with each atom moved by whole box vectors
    to the image nearest its molecule's first atom; ``box`` ``[F, 3, 3]`` (nm, rows, OpenMM's
    reduced triclinic form) or None (returned unchanged)."""
    if box is None:
        return x
    d = x - x[:, :, :1]
    for axis in (2, 1, 0):  # reduced form: c, then b, then a
        shift = np.round(d[..., axis] / box[:, axis, axis][:, None, None])
        d = d - shift[..., None] * box[:, None, None, axis]
    return x[:, :, :1] + d


def centres(x: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Centres of mass ``[F, M, 3]`` (nm) of whole molecules ``x`` ``[F, M, n, 3]`` with atom masses
    ``masses`` ``[M, n]`` (Da)."""
    return np.einsum("fmni,mn->fmi", x, masses) / masses.sum(1)[:, None]


def place_molecules(shapes: np.ndarray, centres_from: np.ndarray, masses: np.ndarray,
                    molecules: Sequence[Sequence[int]], box: Optional[np.ndarray] = None) -> np.ndarray:
    """Positions ``[N, 3]`` (nm): each molecule of ``shapes`` (orientation and internal geometry
    kept) translated so that its centre of mass is that of the same molecule in
    ``centres_from``; atoms in no molecule keep their ``shapes`` positions. ``masses`` ``[N]``
    (Da); ``box`` ``[3, 3]`` (nm) makes molecules split across the box whole first.

    Swapping the two frames splits a prediction's error into its molecules' centres (the
    reference's molecules at the predicted centres) and their orientations (the predicted
    molecules at the reference's centres)."""
    shapes = np.asarray(shapes, dtype=float)
    out = shapes.copy()
    b = None if box is None else np.asarray(box, dtype=float)[None]
    m = np.asarray(masses, dtype=float)
    for idx in groups(molecules):
        body = whole(shapes[None, idx], b)
        target = centres(whole(np.asarray(centres_from, dtype=float)[None, idx], b), m[idx])
        out[idx] = (body + (target - centres(body, m[idx]))[:, :, None])[0]
    return out

