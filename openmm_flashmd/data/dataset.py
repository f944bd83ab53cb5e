"""Training pairs ``(q, v)(t) -> (q, v)(t + stride)`` from reference trajectory files.

Units: positions nm, velocities nm/ps, strides ps, masses Da, box nm (rows = cell vectors).

* :func:`load_trajectories` reads the complete segments of a file written by
  :func:`openmm_flashmd.data.generate.generate` (checking format, version and finiteness).
* :func:`split_segments` splits **segments** (never frames) into training and validation
  sets, so that no validation pair shares a trajectory with a training pair.
* :func:`merge_trajectories` concatenates the segments of several files of one system.
* :class:`ForceFrames` serves single frames (positions, box, potential energy, forces)
  for training energy models (MLIPs).
* :class:`StridePairs` enumerates all pairs of frames ``k`` record intervals apart, for
  one or several strides ``tau = k * record_interval``; optional time-reversal
  augmentation adds ``(q', -v') -> (q, -v)`` for each pair; optional random rotation
  (proper or improper, i.e. with inversion) is applied to positions, velocities and box
  of both ends each time a pair is drawn. With ``rollout = R > 1`` each item also carries
  the R - 1 frames that follow its pair, one stride apart (multi-stride rollout losses).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from openmm_flashmd.data import schema

__all__ = [
    "DataError",
    "TrajectoryData",
    "load_trajectories",
    "merge_trajectories",
    "file_sha256",
    "stride_frames",
    "split_segments",
    "random_orthogonal",
    "turned_inputs",
    "StridePairs",
    "ForceFrames",
]


class DataError(ValueError):
    """Training data that cannot be used (non-finite values, no complete segment, bad stride...)."""


@dataclass
class TrajectoryData:
    """The complete segments of one trajectory file, in memory.

    Arrays: ``positions``/``velocities``/``forces`` [S, F, N, 3] (nm, nm/ps, kJ/mol/nm),
    ``potential_energy`` [S, F] (kJ/mol), ``box`` [S, F, 3, 3] (nm), ``masses`` [N] (Da),
    ``atomic_numbers`` [N]. ``segment_ids`` are the segment indices in the file.
    """

    path: Path
    positions: np.ndarray
    velocities: np.ndarray
    forces: np.ndarray
    potential_energy: np.ndarray
    box: np.ndarray
    masses: np.ndarray
    atomic_numbers: np.ndarray
    segment_ids: np.ndarray
    record_interval: float
    timestep: float
    temperature: float
    periodic: bool
    constraints: np.ndarray
    attrs: Dict[str, Any] = field(default_factory=dict)
    sha256: str = ""

    @property
    def n_segments(self) -> int:
        return self.positions.shape[0]

    @property
    def frames_per_segment(self) -> int:
        return self.positions.shape[1]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[2]

    @property
    def constraints_active(self) -> bool:
        return len(self.constraints) > 0

    def element_masses(self) -> Dict[int, float]:
        """Atomic number -> mass (Da); raises :class:`DataError` if one element has two masses."""
        out: Dict[int, float] = {}
        for z, m in zip(self.atomic_numbers.tolist(), self.masses.tolist()):
            if z in out and abs(out[z] - m) > 1e-6 * max(1.0, m):
                raise DataError(f"{self.path}: element {z} appears with masses {out[z]} and {m} Da")
            out.setdefault(int(z), float(m))
        return out


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_trajectories(path: Union[str, os.PathLike]) -> TrajectoryData:
    """Read the complete segments of a trajectory file.

    Raises :class:`FileNotFoundError`, :class:`~openmm_flashmd.data.schema.TrajectoryFormatError`
    (not HDF5, corrupt, foreign format, unsupported version, missing fields such as
    ``velocities``) and :class:`DataError` (no complete segment, non-finite values).
    """
    path = Path(path)
    with schema.open_trajectory_file(path, "r") as f:
        attrs = schema.read_attrs(f)
        complete = np.flatnonzero(f["segment_complete"][()] == 1)
        if len(complete) == 0:
            raise DataError(f"{path} has no complete segment")
        arrays = {}
        for name in schema.PER_FRAME_DATASETS:
            values = f[name][()]
            if len(complete) < len(values):  # fancy indexing copies: only when segments are missing
                values = values[complete]
            arrays[name] = np.asarray(values, dtype=np.float64)
        masses = np.asarray(f["masses"][()], dtype=np.float64)
        atomic_numbers = np.asarray(f["atomic_numbers"][()], dtype=np.int64)
        constraints = np.asarray(f["constraints"][()], dtype=np.float64).reshape(-1, 3)
    for name, arr in list(arrays.items()) + [("masses", masses)]:
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            where = f"segment {complete[bad[0]]}, frame {bad[1]}" if arr.ndim > 1 else f"index {bad[0]}"
            raise DataError(f"{path}: non-finite value in {name} ({where})")
    if np.any(masses <= 0):
        raise DataError(f"{path}: particles with zero mass (virtual sites) are not supported by stride models")
    return TrajectoryData(
        path=path,
        positions=arrays["positions"],
        velocities=arrays["velocities"],
        forces=arrays["forces"],
        potential_energy=arrays["potential_energy"],
        box=arrays["box"],
        masses=masses,
        atomic_numbers=atomic_numbers,
        segment_ids=complete,
        record_interval=float(attrs["record_interval"]),
        timestep=float(attrs["timestep"]),
        temperature=float(attrs["temperature"]),
        periodic=bool(attrs["periodic"]),
        constraints=constraints,
        attrs=attrs,
        sha256=file_sha256(path),
    )


def merge_trajectories(items: Sequence[Union[str, os.PathLike, TrajectoryData]]) -> TrajectoryData:
    """Load trajectory files (or take loaded ones) and concatenate their segments.

    All must hold the same system (atomic numbers, masses, periodicity) and record
    settings (record interval, frames per segment), else :class:`DataError`. The SHA-256
    of the result is a hash of the files' hashes (so it identifies the set and order).
    """
    loaded = [d if isinstance(d, TrajectoryData) else load_trajectories(d) for d in items]
    if not loaded:
        raise DataError("no trajectory file given")
    first = loaded[0]
    if len(loaded) == 1:
        return first
    for other in loaded[1:]:
        if not (np.array_equal(other.atomic_numbers, first.atomic_numbers)
                and np.allclose(other.masses, first.masses)
                and abs(other.record_interval - first.record_interval) <= 1e-9 * first.record_interval
                and other.frames_per_segment == first.frames_per_segment
                and other.periodic == first.periodic):
            raise DataError(f"{other.path} and {first.path} hold different systems or record settings")

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(d, name) for d in loaded])

    return TrajectoryData(
        path=first.path, positions=cat("positions"), velocities=cat("velocities"), forces=cat("forces"),
        potential_energy=cat("potential_energy"), box=cat("box"), masses=first.masses,
        atomic_numbers=first.atomic_numbers, segment_ids=np.arange(sum(d.n_segments for d in loaded)),
        record_interval=first.record_interval, timestep=first.timestep, temperature=first.temperature,
        periodic=first.periodic, constraints=first.constraints, attrs=first.attrs,
        sha256=hashlib.sha256("".join(d.sha256 for d in loaded).encode()).hexdigest(),
    )


def stride_frames(stride: float, record_interval: float, frames_per_segment: Optional[int] = None) -> int:
    """Number of record intervals in ``stride`` (both ps); :class:`DataError` if ``stride`` is
    not a positive multiple of ``record_interval`` or does not fit in a segment."""
    ratio = stride / record_interval
    k = int(round(ratio))
    if k < 1 or abs(ratio - k) > 1e-6 * max(1.0, ratio):
        raise DataError(
            f"stride {stride} ps is not a positive multiple of the record interval {record_interval} ps"
        )
    if frames_per_segment is not None and k > frames_per_segment - 1:
        raise DataError(
            f"stride {stride} ps is longer than a segment ({(frames_per_segment - 1) * record_interval} ps)"
        )
    return k


def subsample(n: int, limit: Optional[int], seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` items, drawn without replacement
    (all of them when ``limit`` is None or not positive)."""
    if limit is None or limit <= 0 or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def evaluation_segments(
    data: "TrajectoryData", segments: Union[None, str, Sequence[int]], provenance: Dict[str, Any]
) -> Tuple[List[int], Any]:
    """Which loaded segments to evaluate a model on, and how to describe the choice.

    ``segments``: None (the model's held-out segments when ``provenance`` says it was
    trained on this very file, else all), ``"all"``, or segment indices of the file.
    Returns (indices into the loaded segments, description).
    """
    if segments is None:
        if provenance.get("dataset_sha256") == data.sha256 and provenance.get("validation_segments"):
            file_ids, used = list(provenance["validation_segments"]), "validation (from model provenance)"
        else:
            file_ids, used = data.segment_ids.tolist(), "all"
    elif isinstance(segments, str):
        if segments != "all":
            raise ValueError("segments must be None, 'all' or a list of segment indices")
        file_ids, used = data.segment_ids.tolist(), "all"
    else:
        file_ids = [int(x) for x in segments]
        used = file_ids
    lookup = {int(x): k for k, x in enumerate(data.segment_ids.tolist())}
    missing = [x for x in file_ids if x not in lookup]
    if missing:
        raise ValueError(f"segments {missing} are not complete segments of {data.path}")
    return [lookup[x] for x in file_ids], used


def split_segments(n_segments: int, validation_fraction: float = 0.1, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Random split of segment indices ``0..n_segments-1`` into (train, validation).

    At least one segment goes to each side when ``validation_fraction > 0``; with
    ``validation_fraction == 0`` every segment is used for training.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError("validation_fraction must be in [0, 1)")
    order = np.random.default_rng(seed).permutation(n_segments)
    if validation_fraction == 0.0:
        return np.sort(order), np.array([], dtype=np.int64)
    if n_segments < 2:
        raise DataError("a train/validation split needs at least 2 complete segments")
    n_val = min(n_segments - 1, max(1, int(round(validation_fraction * n_segments))))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def random_orthogonal(batch: int, generator: Optional[torch.Generator] = None,
                      inversion: bool = True, dtype=torch.float64) -> torch.Tensor:
    """``batch`` random orthogonal 3x3 matrices (Haar rotations; with ``inversion``, half of
    them improper, det = -1)."""
    a = torch.randn(batch, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q = q * det.sign().view(-1, 1, 1)  # now proper rotations
    if inversion:
        flip = torch.randint(0, 2, (batch,), generator=generator) * 2 - 1
        q = q * flip.to(q.dtype).view(-1, 1, 1)
    return q.to(dtype)


#: The entries of a stride batch that a model reads as vectors (cell vectors as rows).
_INPUT_VECTORS = ("positions", "velocities", "box", "guess", "guess_velocities")


def turned_inputs(batch: Dict[str, torch.Tensor], rotation: torch.Tensor) -> Dict[str, torch.Tensor]:
    """A stride batch's model inputs (positions nm, velocities nm/ps, cell rows nm and, when
    present, the Verlet guess) in the frame turned by ``rotation`` ``[B, 3, 3]``, one matrix per
    item (row vectors ``x -> x R^T``, in the batch's dtype); a model's outputs for them turn
    back with ``y R``."""
    turn = rotation.transpose(1, 2)
    return {k: torch.bmm(batch[k], turn.to(batch[k])) for k in _INPUT_VECTORS if k in batch}


class StridePairs(torch.utils.data.Dataset):
    """Pairs of frames ``stride`` apart within the segments of a :class:`TrajectoryData`.

    Parameters
    ----------
    data : the trajectories
    strides : one stride or several (ps); each a multiple of ``data.record_interval``
    segments : indices into ``data``'s segments to use (default: all)
    time_reversal : also yield the reversed pair ``(q', -v') -> (q, -v)``
    random_rotations : rotate (and with ``inversion`` also reflect) every drawn pair by a
        fresh random orthogonal matrix (positions, velocities and box, both ends)
    dtype : torch dtype of returned tensors
    guesses : the Verlet guess of every frame for the (one) stride, from
        :func:`openmm_flashmd.data.guess.verlet_guesses`: ``{"forward": (g, w),
        "reverse": (g, w)}`` with arrays ``[S, F, N, 3]`` (nm, nm/ps); ``"reverse"`` (guesses
        from negated velocities) is needed with ``time_reversal``
    noisy : noise injection: ``{"states": (positions, velocities), "fraction": p}`` with the
        noisy copies of every frame (:func:`openmm_flashmd.data.guess.noisy_frames`), plus
        ``"guesses"`` (their Verlet guesses, as ``guesses``) when ``guesses`` is given; each
        drawn item takes its *inputs* from the noisy copy with probability ``p`` (targets stay
        the unperturbed future)
    rollout : strides per item, R >= 1: with R > 1 only starts with R strides left in their
        segment are used, and each item also carries the states after strides 2..R
        (reversed items: the same frames backwards, velocities negated); the Verlet guesses of
        later strides are the trainer's to compute (at the predicted states)
    return_guesses : with ``guesses`` (forward and reverse), each item also carries the
        Verlet guess of its *return*: from the target state with negated velocities, the start
        of the stride that brings a time-reversible dynamics back (``loss.reversal``)

    Each item/batch is a dict with ``positions``, ``velocities`` (input, nm and nm/ps),
    ``new_positions``, ``new_velocities`` (target), ``box`` (nm), ``stride`` (ps),
    ``reversed`` (bool) and ``segment`` (index into ``data``); with ``guesses`` also
    ``guess`` (nm) and ``guess_velocities`` (nm/ps) of the start of the pair, with
    ``return_guesses`` also ``return_guess`` and ``return_guess_velocities``; with
    ``rollout`` R > 1 also ``rollout_positions`` and ``rollout_velocities`` [B, R - 1, N, 3]
    (nm, nm/ps): the reference states after strides 2..R.
    """

    def __init__(
        self,
        data: TrajectoryData,
        strides: Union[float, Sequence[float]],
        segments: Optional[Sequence[int]] = None,
        time_reversal: bool = False,
        random_rotations: bool = False,
        inversion: bool = True,
        dtype: torch.dtype = torch.float64,
        generator: Optional[torch.Generator] = None,
        guesses: Optional[Dict[str, Tuple[np.ndarray, np.ndarray]]] = None,
        noisy: Optional[Dict[str, Any]] = None,
        rollout: int = 1,
        return_guesses: bool = False,
    ):
        self.data = data
        self.rollout = int(rollout)
        self.return_guesses = bool(return_guesses)
        if self.rollout < 1:
            raise DataError("rollout must be at least 1 stride per item")
        if self.return_guesses and guesses is None:
            raise DataError("return guesses need the Verlet guesses of the frames")
        self.strides = [float(s) for s in (strides if isinstance(strides, (list, tuple, np.ndarray)) else [strides])]
        if not self.strides:
            raise DataError("no stride given")
        self.frame_steps = [stride_frames(s, data.record_interval, data.frames_per_segment) for s in self.strides]
        self.segments = np.arange(data.n_segments) if segments is None else np.asarray(segments, dtype=np.int64)
        if len(self.segments) and (self.segments.min() < 0 or self.segments.max() >= data.n_segments):
            raise IndexError("segment index out of range")
        self.time_reversal = bool(time_reversal)
        self.random_rotations = bool(random_rotations)
        self.inversion = bool(inversion)
        self.dtype = dtype
        self.generator = generator
        rows: List[np.ndarray] = []
        n_frames = data.frames_per_segment
        for k_index, k in enumerate(self.frame_steps):
            starts = np.arange(n_frames - k * self.rollout)
            for s in self.segments:
                rows.append(np.stack([np.full_like(starts, s), starts, starts + k, np.full_like(starts, k_index)], 1))
        self.pairs = np.concatenate(rows) if rows else np.zeros((0, 4), dtype=np.int64)
        self._pos = torch.from_numpy(data.positions)
        self._vel = torch.from_numpy(data.velocities)
        self._box = torch.from_numpy(data.box)
        self._stride_values = torch.tensor(self.strides, dtype=dtype)
        self._guesses: Optional[List[torch.Tensor]] = None
        if guesses is not None:
            if len(self.strides) != 1:
                raise DataError("Verlet guesses are for one stride; got several strides")
            if (self.time_reversal or self.return_guesses) and guesses.get("reverse") is None:
                raise DataError("time_reversal and return guesses need the Verlet guesses of the reversed velocities")
            forward = guesses["forward"]
            reverse = guesses.get("reverse") or forward
            self._guesses = [torch.from_numpy(np.asarray(a)) for a in (*forward, *reverse)]
        self._noisy: Optional[List[torch.Tensor]] = None
        self.noisy_fraction = 0.0
        if noisy is not None:
            if (guesses is None) != (noisy.get("guesses") is None):
                raise DataError("noisy copies need Verlet guesses exactly when the pairs have them")
            self.noisy_fraction = float(noisy["fraction"])
            tensors = [torch.from_numpy(np.asarray(a)) for a in noisy["states"]]
            if noisy.get("guesses") is not None:
                forward = noisy["guesses"]["forward"]
                reverse = noisy["guesses"].get("reverse") or forward
                tensors += [torch.from_numpy(np.asarray(a)) for a in (*forward, *reverse)]
            self._noisy = tensors

    def __len__(self) -> int:
        return len(self.pairs) * (2 if self.time_reversal else 1)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        batch = self.get_batch(np.array([index]))
        return {k: (v[0] if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in batch.items()}

    def get_batch(self, indices: Union[Sequence[int], np.ndarray]) -> Dict[str, torch.Tensor]:
        """A batch (leading dimension B) for item indices (vectorised)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError("pair index out of range")
        n_pairs = len(self.pairs)
        rev = idx >= n_pairs
        rows = self.pairs[idx % n_pairs] if n_pairs else self.pairs[:0]
        seg = torch.from_numpy(rows[:, 0])
        first, k = rows[:, 1], rows[:, 2] - rows[:, 1]
        last = first + self.rollout * k  # a reversed item runs from the last frame backwards
        a = torch.from_numpy(np.where(rev, last, first))
        b = torch.from_numpy(np.where(rev, last - k, first + k))
        sign = torch.from_numpy(np.where(rev, -1.0, 1.0)).view(-1, 1, 1)
        q0, q1 = self._pos[seg, a], self._pos[seg, b]
        v0, v1 = self._vel[seg, a] * sign, self._vel[seg, b] * sign
        box = self._box[seg, a]
        flip = torch.from_numpy(rev).view(-1, 1, 1)
        guess: List[torch.Tensor] = []
        if self._guesses is not None:
            g_fwd, w_fwd, g_rev, w_rev = self._guesses
            guess = [torch.where(flip, g_rev[seg, a], g_fwd[seg, a]), torch.where(flip, w_rev[seg, a], w_fwd[seg, a])]
        returning: List[torch.Tensor] = []  # the guess from the target with negated velocities
        if self.return_guesses:
            returning = [torch.where(flip, g_fwd[seg, b], g_rev[seg, b]), torch.where(flip, w_fwd[seg, b], w_rev[seg, b])]
        if self._noisy is not None and self.noisy_fraction > 0 and len(idx):
            use = (torch.rand(len(idx), generator=self.generator) < self.noisy_fraction).view(-1, 1, 1)
            q0 = torch.where(use, self._noisy[0][seg, a], q0)
            v0 = torch.where(use, self._noisy[1][seg, a] * sign, v0)
            if guess:
                g_fwd, w_fwd, g_rev, w_rev = self._noisy[2:]
                guess = [torch.where(use, torch.where(flip, g_rev[seg, a], g_fwd[seg, a]), guess[0]),
                         torch.where(use, torch.where(flip, w_rev[seg, a], w_fwd[seg, a]), guess[1])]
        tensors = [q0, q1, v0, v1, box] + guess + returning
        later: List[torch.Tensor] = []  # states after strides 2..R, [B, R - 1, N, 3] each
        if self.rollout > 1:
            j = np.arange(2, self.rollout + 1)[None, :]
            frames = torch.from_numpy(np.where(rev[:, None], last[:, None] - j * k[:, None],
                                               first[:, None] + j * k[:, None]))
            later = [self._pos[seg.view(-1, 1), frames], self._vel[seg.view(-1, 1), frames] * sign.view(-1, 1, 1, 1)]
        if self.random_rotations and len(idx):
            rot = random_orthogonal(len(idx), self.generator, self.inversion)
            rt = rot.transpose(1, 2)
            tensors = [torch.bmm(x, rt) for x in tensors]
            later = [torch.einsum("brni,bij->brnj", x, rt) for x in later]
        q0, q1, v0, v1, box = tensors[:5]
        extra = {}  # the Verlet guess of the start and the rollout states
        if later:
            extra = {"rollout_positions": later[0].to(self.dtype), "rollout_velocities": later[1].to(self.dtype)}
        if self._guesses is not None:
            extra.update(guess=tensors[5].to(self.dtype), guess_velocities=tensors[6].to(self.dtype))
        if returning:
            extra.update(return_guess=tensors[7].to(self.dtype), return_guess_velocities=tensors[8].to(self.dtype))
        stride = self._stride_values[torch.from_numpy(rows[:, 3])]
        return {
            "positions": q0.to(self.dtype),
            "velocities": v0.to(self.dtype),
            "new_positions": q1.to(self.dtype),
            "new_velocities": v1.to(self.dtype),
            "box": box.to(self.dtype),
            "stride": stride,
            "reversed": torch.from_numpy(rev),
            "segment": seg,
            **extra,
        }


class ForceFrames(torch.utils.data.Dataset):
    """Single frames of the segments of a :class:`TrajectoryData`, for energy models.

    Parameters
    ----------
    data : the trajectories
    segments : indices into ``data``'s segments to use (default: all)
    frame_interval : use every ``frame_interval``-th recorded frame of each segment
        (consecutive frames are strongly correlated)
    random_rotations : rotate (and with ``inversion`` also reflect) positions, forces and
        box of every drawn frame by a fresh random orthogonal matrix
    dtype : torch dtype of the returned positions, forces and box (energies are float64)

    Each batch is a dict with ``positions`` [B, N, 3] (nm), ``forces`` [B, N, 3]
    (kJ/mol/nm), ``energy`` [B] (kJ/mol, float64), ``box`` [B, 3, 3] (nm) and
    ``segment``, ``frame`` (indices into ``data``).
    """

    def __init__(
        self,
        data: TrajectoryData,
        segments: Optional[Sequence[int]] = None,
        frame_interval: int = 1,
        random_rotations: bool = False,
        inversion: bool = True,
        dtype: torch.dtype = torch.float64,
        generator: Optional[torch.Generator] = None,
    ):
        if int(frame_interval) < 1:
            raise ValueError("frame_interval must be a positive integer")
        self.data = data
        self.segments = np.arange(data.n_segments) if segments is None else np.asarray(segments, dtype=np.int64)
        if len(self.segments) and (self.segments.min() < 0 or self.segments.max() >= data.n_segments):
            raise IndexError("segment index out of range")
        frames = np.arange(0, data.frames_per_segment, int(frame_interval))
        self.items = np.stack(np.meshgrid(self.segments, frames, indexing="ij"), -1).reshape(-1, 2)
        self.random_rotations = bool(random_rotations)
        self.inversion = bool(inversion)
        self.dtype = dtype
        self.generator = generator
        self._pos = torch.from_numpy(data.positions)
        self._frc = torch.from_numpy(data.forces)
        self._box = torch.from_numpy(data.box)
        self._energy = torch.from_numpy(data.potential_energy)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        batch = self.get_batch(np.array([index]))
        return {k: v[0] for k, v in batch.items()}

    def get_batch(self, indices: Union[Sequence[int], np.ndarray]) -> Dict[str, torch.Tensor]:
        """A batch (leading dimension B) for item indices (vectorised)."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError("frame index out of range")
        rows = self.items[idx]
        seg, frame = torch.from_numpy(rows[:, 0]), torch.from_numpy(rows[:, 1])
        q, f, box = self._pos[seg, frame], self._frc[seg, frame], self._box[seg, frame]
        if self.random_rotations and len(idx):
            rt = random_orthogonal(len(idx), self.generator, self.inversion).transpose(1, 2)
            q, f, box = (torch.bmm(x, rt) for x in (q, f, box))
        return {"positions": q.to(self.dtype), "forces": f.to(self.dtype), "box": box.to(self.dtype),
                "energy": self._energy[seg, frame], "segment": seg, "frame": frame}
