"""Accuracy of an energy model (MLIP) on reference trajectories, against trivial baselines.

For frames of held-out segments the model's potential energy (kJ/mol) and forces
(kJ/mol/nm) are compared with the reference stored by ``generate``:

* energy: RMSE and MAE **per atom**, ``(E - E_ref) / N``, next to the composition-only
  baseline ``E = sum_i e_Z(i)`` (the model's composition energies, i.e. the mean
  training energy);
* forces: per element, RMSE and MAE per Cartesian **component**, next to the zero-force
  baseline (the rms reference force component); ``relative`` = RMSE / baseline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import torch

from openmm_flashmd.data.dataset import (
    ForceFrames,
    TrajectoryData,
    evaluation_segments,
    load_trajectories,
    subsample,
)
from openmm_flashmd.train.evaluate import _symbol, check_model_matches_data

__all__ = ["evaluate_mlip", "energy_force_errors", "summarise_energy_force", "format_mlip_table",
           "energy_model_metadata"]


def energy_model_metadata(model: torch.nn.Module) -> Dict[str, Any]:
    """The model's metadata as a dict (see :func:`openmm_flashmd.model.energy.read_energy_metadata`)."""
    from openmm_flashmd.model.energy import read_energy_metadata

    return read_energy_metadata(model)


def _energies_and_forces(model: torch.nn.Module, positions: torch.Tensor, numbers: torch.Tensor,
                         box: torch.Tensor):
    """(energies [B] kJ/mol, forces [B, N, 3] kJ/mol/nm) from the model's
    ``energy_and_forces_batch``, else by autograd through ``forward_batch`` or ``forward``."""
    if hasattr(model, "energy_and_forces_batch"):
        energies, forces = model.energy_and_forces_batch(positions, numbers, box, False)
        return energies.detach(), forces.detach()
    pos = positions.detach().clone().requires_grad_(True)
    if hasattr(model, "forward_batch"):
        energies = model.forward_batch(pos, numbers, box)
    else:
        energies = torch.stack([model(pos[b], numbers, box[b]) for b in range(pos.shape[0])])
    (grad,) = torch.autograd.grad(energies.sum(), pos)
    return energies.detach(), -grad.detach()


def energy_force_errors(
    energies: torch.Tensor, forces: torch.Tensor, energies_ref: torch.Tensor, forces_ref: torch.Tensor,
    composition_sum: float, atomic_numbers: np.ndarray, sums: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Accumulate the errors of a batch into ``sums`` (created if None).

    ``energies`` / ``energies_ref`` [B] kJ/mol; ``forces`` / ``forces_ref`` [B, N, 3]
    kJ/mol/nm; ``composition_sum`` the composition-only energy of one frame (kJ/mol).
    """
    if sums is None:
        sums = {}
    n = forces.shape[1]
    e_err = (energies.double() - energies_ref.double()) / n
    e_base = (composition_sum - energies_ref.double()) / n
    entry = sums.setdefault("energy", {"sq": 0.0, "abs": 0.0, "base_sq": 0.0, "count": 0})
    entry["sq"] += float((e_err ** 2).sum())
    entry["abs"] += float(e_err.abs().sum())
    entry["base_sq"] += float((e_base ** 2).sum())
    entry["count"] += int(e_err.numel())
    f_err = forces.double() - forces_ref.double()
    ref = forces_ref.double()
    z = torch.as_tensor(atomic_numbers)
    per = sums.setdefault("forces", {})
    for element in np.unique(atomic_numbers).tolist():
        mask = z == element
        e = per.setdefault(int(element), {"sq": 0.0, "abs": 0.0, "ref_sq": 0.0, "count": 0})
        e["sq"] += float((f_err[:, mask] ** 2).sum())
        e["abs"] += float(f_err[:, mask].abs().sum())
        e["ref_sq"] += float((ref[:, mask] ** 2).sum())
        e["count"] += int(f_err[:, mask].numel())
    return sums


def summarise_energy_force(sums: Dict[str, Any]) -> Dict[str, Any]:
    """RMSE/MAE and baselines from accumulated :func:`energy_force_errors` sums."""
    e = sums["energy"]
    count = max(e["count"], 1)
    energy = {"rmse_per_atom": float(np.sqrt(e["sq"] / count)), "mae_per_atom": e["abs"] / count,
              "composition_baseline_rmse_per_atom": float(np.sqrt(e["base_sq"] / count)), "n_frames": int(e["count"])}
    energy["improvement"] = energy["composition_baseline_rmse_per_atom"] / max(energy["rmse_per_atom"], 1e-300)

    def block(entries):
        c = max(sum(x["count"] for x in entries), 1)
        out = {"rmse": float(np.sqrt(sum(x["sq"] for x in entries) / c)), "mae": sum(x["abs"] for x in entries) / c,
               "zero_force_rmse": float(np.sqrt(sum(x["ref_sq"] for x in entries) / c)),
               "n_components": int(sum(x["count"] for x in entries))}
        out["relative"] = out["rmse"] / max(out["zero_force_rmse"], 1e-300)
        out["improvement"] = out["zero_force_rmse"] / max(out["rmse"], 1e-300)
        return out

    forces = {"per_element": {str(z): dict(symbol=_symbol(z), **block([x])) for z, x in sorted(sums["forces"].items())},
              "all": block(list(sums["forces"].values()))}
    return {"energy": energy, "forces": forces}


def format_mlip_table(result: Dict[str, Any]) -> str:
    """A plain-text table of an :func:`evaluate_mlip` result (or of a summary)."""
    energy, forces = result["energy"], result["forces"]
    lines = []
    if "n_frames" in result:
        lines.append(f"{result['n_frames']} frames, segments: {result['segments_used']}")
    lines.append(f"energy per atom (kJ/mol): RMSE {energy['rmse_per_atom']:.4g}, MAE {energy['mae_per_atom']:.4g}; "
                 f"composition-only baseline RMSE {energy['composition_baseline_rmse_per_atom']:.4g} "
                 f"(ratio {energy['improvement']:.1f})")
    head = f"{'element':>8} {'F RMSE':>11} {'F MAE':>11} {'zero-F RMS':>11} {'ratio':>7} {'relative':>9}"
    lines += ["forces per component, kJ/mol/nm; ratio = zero-force RMS / RMSE", head, "-" * len(head)]
    rows = [(e["symbol"], e) for e in forces["per_element"].values()] + [("all", forces["all"])]
    for name, e in rows:
        lines.append(f"{name:>8} {e['rmse']:11.4e} {e['mae']:11.4e} {e['zero_force_rmse']:11.4e} "
                     f"{e['improvement']:7.1f} {100 * e['relative']:8.2f}%")
    return "\n".join(lines)


def _composition_sum(model: torch.nn.Module, meta: Dict[str, Any], atomic_numbers: np.ndarray) -> float:
    elements = [int(z) for z in meta.get("elements") or []]
    comp = getattr(model, "composition_energies", None)
    if comp is not None and elements and comp.numel() == len(elements):
        table = dict(zip(elements, comp.double().cpu().tolist()))
    else:
        table = {int(k): float(v) for k, v in
                 ((meta.get("provenance") or {}).get("scales") or {}).get("composition_energies", {}).items()}
    return float(sum(table.get(int(z), 0.0) for z in atomic_numbers))


def evaluate_mlip(
    model: Union[str, os.PathLike, torch.nn.Module],
    data: Union[str, os.PathLike, TrajectoryData],
    segments: Union[None, str, Sequence[int]] = None,
    max_frames: Optional[int] = 2000,
    frame_interval: Optional[int] = None,
    batch_size: int = 8,
    output_json: Union[None, str, os.PathLike] = None,
    overwrite: bool = False,
    device: str = "cpu",
    seed: int = 0,
) -> Dict[str, Any]:
    """Energy and per-element force errors of an energy model on ``data``.

    Parameters
    ----------
    model : exported energy model file (``train-mlip``'s ``model.pt``) or module with
        ``energy_and_forces_batch``, ``forward_batch`` or ``forward(positions [N,3] nm,
        atomic_numbers [N], box [3,3] nm) -> kJ/mol``
    data : trajectory file (or loaded :class:`TrajectoryData`)
    segments : indices of the file's segments, ``"all"``, or None: the validation segments
        recorded in the model's provenance when it was trained on this very file (same
        SHA-256), else all segments
    max_frames : evaluate a random subset of at most this many frames (None = all)
    frame_interval : use every k-th recorded frame; default: the model's training
        ``frame_interval`` on its own training file (so the numbers match those recorded
        at export), else 1
    batch_size : frames per model call
    output_json : write the result there (refuses an existing file unless ``overwrite``)
    device : torch device for the model

    Returns a dict with ``n_frames``, ``segments_used``, ``energy`` (``rmse_per_atom``,
    ``mae_per_atom``, ``composition_baseline_rmse_per_atom``, ``improvement``; kJ/mol)
    and ``forces`` (``per_element`` {Z: {symbol, rmse, mae, zero_force_rmse, relative,
    improvement, n_components}} and ``all``; kJ/mol/nm, per component).
    """
    if output_json is not None and Path(output_json).exists() and not overwrite:
        raise FileExistsError(f"{output_json} exists; pass overwrite=True to replace it")
    from openmm_flashmd.model.mlip import load_energy_model

    module = model if isinstance(model, torch.nn.Module) else load_energy_model(model, map_location=device)
    meta = energy_model_metadata(module)
    data = data if isinstance(data, TrajectoryData) else load_trajectories(data)
    check_model_matches_data(meta, data)

    prov = meta.get("provenance") or {}
    same_data = prov.get("dataset_sha256") == data.sha256
    if frame_interval is None:
        frame_interval = int(prov.get("frame_interval", 1)) if same_data else 1
    loaded, segments_used = evaluation_segments(data, segments, prov)
    dtype = torch.float64
    for p in module.parameters():
        dtype = p.dtype
        break
    frames = ForceFrames(data, loaded, frame_interval=frame_interval, dtype=dtype)
    order = subsample(len(frames), max_frames, seed)
    if len(order) == 0:
        raise ValueError("no frames to evaluate")

    numbers = torch.as_tensor(data.atomic_numbers).to(device)
    comp_sum = _composition_sum(module, meta, data.atomic_numbers)
    sums: Dict[str, Any] = {}
    for start in range(0, len(order), max(1, int(batch_size))):
        batch = frames.get_batch(order[start:start + max(1, int(batch_size))])
        energies, forces = _energies_and_forces(module, batch["positions"].to(device), numbers,
                                                batch["box"].to(device))
        energy_force_errors(energies.cpu(), forces.cpu(), batch["energy"], batch["forces"], comp_sum,
                            data.atomic_numbers, sums)
    result: Dict[str, Any] = {"n_frames": int(len(order)), "segments_used": segments_used,
                              "frame_interval": int(frame_interval), "data": str(data.path),
                              "dataset_sha256": data.sha256}
    result.update(summarise_energy_force(sums))
    if output_json is not None:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(json.dumps(result, indent=2))
    return result
