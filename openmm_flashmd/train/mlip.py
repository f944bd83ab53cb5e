"""Train a PET energy model (a machine-learned interatomic potential, MLIP) on the
potential energies and forces recorded by :func:`openmm_flashmd.data.generate.generate`.

``train_mlip(data, output_dir, ...)`` writes into ``output_dir`` the same files as the
stride trainer (the shared engine of :mod:`openmm_flashmd.train.engine`):

=====================  =================================================================
file                   content
=====================  =================================================================
``hypers.yaml``        the full hyper-parameters used (defaults: ``default_mlip_hypers.yaml``)
``split.json``         training / validation segment indices (file indices)
``log.csv``            one row per validation: step, epoch, lr, train and validation losses,
                       validation energy RMSE per atom (kJ/mol) and force RMSE
                       (kJ/mol/nm, per component), wall time (s)
``loss_curve.png``     training and validation loss against step
``checkpoint.pt``      everything needed to resume
``model.pt``           the exported TorchScript energy model (best validation weights)
``validation.json``    energy and per-element force errors of ``model.pt`` on the
                       validation segments (see :func:`openmm_flashmd.train.evaluate_mlip.evaluate_mlip`)
=====================  =================================================================

Before training, the per-element *composition energies* ``e_Z`` (kJ/mol) are fitted by
least squares to the training energies (``E ~ sum_i e_Z(i)``; with one composition the
minimum-norm solution) and stored in the model, and ``energy_scale`` (kJ/mol, the unit
of the learned per-atom energies) is set to ``rms force component x 0.1 nm``. The loss
(``default_mlip_hypers.yaml``) is

``w_E <((E - E_ref)/N)^2> / var_E + w_F <|F - F_ref|^2> / <|F_ref|^2>``,

with ``var_E`` the variance of the per-atom energy left after the composition energies,
so a model predicting the mean energy and zero forces scores about 1 per term.

The exported model runs in OpenMM through :func:`openmm_flashmd.model.mlip.create_mlip_system`
(or :func:`~openmm_flashmd.model.mlip.add_mlip_force`), e.g. as the potential of
FlashMD's energy filter.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from openmm_flashmd.data.dataset import DataError, ForceFrames, TrajectoryData
from openmm_flashmd.train.engine import (
    ProcessInfo, TrainingTask, TrainResult, check_output_dir, load_training_data, resume_hypers, run_training,
    setup_process,
)
from openmm_flashmd.train.evaluate_mlip import energy_force_errors, summarise_energy_force

__all__ = ["train_mlip", "MLIPTask", "composition_energies", "energy_statistics", "ENERGY_SCALE_LENGTH"]

#: ``energy_scale`` = rms force component (kJ/mol/nm) x this length (nm).
ENERGY_SCALE_LENGTH = 0.1


def composition_energies(counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Least-squares per-element energies (kJ/mol) from element ``counts`` [F, E] and
    ``energies`` [F] (kJ/mol); the minimum-norm solution when the compositions are
    degenerate (e.g. every frame has the same composition)."""
    solution, *_ = np.linalg.lstsq(np.asarray(counts, dtype=np.float64), np.asarray(energies, dtype=np.float64),
                                   rcond=None)
    return solution


def energy_statistics(data: TrajectoryData, segments: np.ndarray, elements: Sequence[int],
                      frame_interval: int = 1) -> Dict[str, Any]:
    """Composition energies, per-atom energy variance and force scale of the training frames.

    Returns ``composition_energies`` ({Z: kJ/mol}), ``energy_variance`` ((kJ/mol)^2, of
    the per-atom energy after subtracting the composition energies), ``force_rms``
    (kJ/mol/nm, per component) and ``energy_scale`` (kJ/mol).
    """
    energies = data.potential_energy[segments][:, ::frame_interval].reshape(-1)
    forces = data.forces[segments][:, ::frame_interval]
    counts = np.array([[np.sum(data.atomic_numbers == z) for z in elements]], dtype=np.float64)
    counts = np.repeat(counts, len(energies), axis=0)
    comp = composition_energies(counts, energies)
    residual = (energies - counts @ comp) / data.n_atoms
    force_rms = float(np.sqrt(np.mean(forces ** 2)))
    return {
        "composition_energies": {str(int(z)): float(e) for z, e in zip(elements, comp)},
        "energy_variance": max(float(np.var(residual)), 1e-12),
        "force_rms": force_rms,
        "energy_scale": max(force_rms * ENERGY_SCALE_LENGTH, 1e-6),
    }


class _EnergyForces(torch.nn.Module):
    """``forward(batch)`` -> (energies [B] kJ/mol, forces [B, N, 3] kJ/mol/nm) with a graph
    for the parameter gradients (what DDP wraps)."""

    def __init__(self, model: torch.nn.Module, numbers: torch.Tensor):
        super().__init__()
        self.model = model
        self.numbers = numbers

    def forward(self, batch: Dict[str, torch.Tensor]):
        return self.model.energy_and_forces_batch(batch["positions"], self.numbers, batch["box"], True)


class MLIPTask(TrainingTask):
    """A PET energy model learning potential energies and forces from trajectory frames."""

    name = "mlip"
    train_parts = ("loss_energy", "loss_forces")
    val_fields = ("val_loss_energy", "val_loss_forces", "val_energy_rmse_per_atom", "val_force_rmse")

    def __init__(self, h: Dict[str, Any], paths: Sequence[Any], tdata: TrajectoryData, train_idx: np.ndarray,
                 val_idx: np.ndarray, proc: ProcessInfo, ckpt: Optional[Dict[str, Any]]):
        from openmm_flashmd.model.energy import PETEnergyModel
        from openmm_flashmd.model.pet import PETHypers

        t, hd = h["training"], h["data"]
        if not np.any(tdata.forces):
            raise DataError(f"{tdata.path}: every stored force is zero; an MLIP needs the reference forces "
                            "(regenerate the data with 'openmm-flashmd generate')")
        self.h, self.tdata = h, tdata
        self.train_idx, self.val_idx = train_idx, val_idx
        self.device = proc.device
        interval = int(hd["frame_interval"])
        dtype = torch.float64 if t["dtype"] == "float64" else torch.float32
        self.seed(int(t["seed"]), proc.rank)
        self.set_datasets(
            ForceFrames(tdata, train_idx, interval, random_rotations=hd["random_rotations"], dtype=dtype,
                        generator=self.generator),
            ForceFrames(tdata, val_idx, interval, dtype=dtype) if len(val_idx) else None,
            int(t["max_validation_frames"]), "no training frames",
        )

        elements = sorted(int(z) for z in np.unique(tdata.atomic_numbers))
        self.scales = ckpt["scales"] if ckpt is not None else energy_statistics(tdata, train_idx, elements, interval)
        self.provenance = {
            "dataset_sha256": tdata.sha256,
            "data": [str(Path(p.path if isinstance(p, TrajectoryData) else p).name) for p in paths],
            "data_description": str(tdata.attrs.get("description", "")),
            "data_temperature": tdata.temperature,
            "record_interval": tdata.record_interval,
            "frame_interval": interval,
            "training_segments": self.file_ids(train_idx),
            "validation_segments": self.file_ids(val_idx),
            "scales": self.scales,
        }
        phypers = PETHypers.from_dict(h["model"])
        self.spec = {"hypers": phypers.to_dict(), "elements": elements, "periodic": bool(tdata.periodic),
                     "provenance": self.provenance, "dtype": t["dtype"]}
        self.model = PETEnergyModel(phypers, elements, bool(tdata.periodic), self.provenance)
        self.model.set_composition_energies({int(z): e for z, e in self.scales["composition_energies"].items()})
        self.model.set_energy_scale(float(self.scales["energy_scale"]))
        self.model.to(dtype=dtype, device=self.device)
        self.numbers = torch.as_tensor(tdata.atomic_numbers, device=self.device)
        self.w_energy, self.w_forces = float(h["loss"]["energy"]), float(h["loss"]["forces"])
        self.inv_var_e = 1.0 / float(self.scales["energy_variance"])
        self.inv_f2 = 1.0 / float(self.scales["force_rms"]) ** 2

    def forward_module(self) -> torch.nn.Module:
        return _EnergyForces(self.model, self.numbers)

    def _parts(self, energies: torch.Tensor, forces: torch.Tensor, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        n = forces.shape[1]
        per_atom = (energies.to(torch.float64) - batch["energy"]) / n
        loss_energy = (per_atom ** 2).mean() * self.inv_var_e
        loss_forces = ((forces - batch["forces"].to(forces.dtype)) ** 2).mean().to(torch.float64) * self.inv_f2
        return {"loss": self.w_energy * loss_energy + self.w_forces * loss_forces,
                "loss_energy": loss_energy, "loss_forces": loss_forces}

    def loss(self, outputs, batch):
        return self._parts(outputs[0], outputs[1], batch)

    def validate(self) -> Dict[str, Any]:
        if self.val_ds is None:
            return {key: math.nan for key in ("val_loss",) + tuple(self.val_fields)}
        sums: Dict = {}
        le = lf = 0.0
        n = 0
        bs = int(self.h["training"]["batch_size"]) * 2
        composition_sum = self._composition_sum()
        for s in range(0, len(self.val_order), bs):
            host = self.val_ds.get_batch(self.val_order[s:s + bs])
            batch = self._to_dev(host)
            energies, forces = self.model.energy_and_forces_batch(batch["positions"], self.numbers, batch["box"],
                                                                  False)
            energies, forces = energies.detach(), forces.detach()
            parts = self._parts(energies, forces, batch)
            m = energies.shape[0]
            le += float(parts["loss_energy"]) * m
            lf += float(parts["loss_forces"]) * m
            n += m
            energy_force_errors(energies.cpu(), forces.cpu(), host["energy"], host["forces"],
                                composition_sum, self.tdata.atomic_numbers, sums)
        summary = summarise_energy_force(sums)
        return {"val_loss": (self.w_energy * le + self.w_forces * lf) / n, "val_loss_energy": le / n,
                "val_loss_forces": lf / n, "val_energy_rmse_per_atom": summary["energy"]["rmse_per_atom"],
                "val_force_rmse": summary["forces"]["all"]["rmse"], "summary": summary}

    def _composition_sum(self) -> float:
        comp = self.scales["composition_energies"]
        return float(sum(comp[str(int(z))] for z in self.tdata.atomic_numbers))

    def final_validation(self, val: Dict[str, Any], best_step: int) -> Dict[str, Any]:
        validation = {"loss": val["val_loss"], "step": best_step}
        if "summary" in val:
            validation.update({"errors": val["summary"], "segments": self.file_ids(self.val_idx),
                               "n_frames": int(len(self.val_order))})
        return validation

    def export(self, path: Path, validation: Dict[str, Any]) -> Path:
        from openmm_flashmd.train.export import export_energy_model

        return export_energy_model(self.model, path, provenance=self.provenance, validation=validation,
                                   overwrite=True)


def train_mlip(
    data: Union[str, os.PathLike, TrajectoryData, Sequence[Union[str, os.PathLike]]],
    output_dir: Union[str, os.PathLike],
    hypers: Union[None, str, os.PathLike, Mapping[str, Any]] = None,
    overrides: Union[None, Mapping[str, Any], Sequence[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    progress: bool = True,
    export: bool = True,
) -> TrainResult:
    """Train a PET energy model (MLIP) on the energies and forces of trajectory file(s) ``data``.

    Parameters
    ----------
    data : trajectory file(s) from :func:`openmm_flashmd.data.generate.generate` (several
        files must hold the same system and record settings); their ``forces`` (kJ/mol/nm)
        and ``potential_energy`` (kJ/mol) are the targets
    output_dir : directory for logs, checkpoints and the exported model
    hypers : YAML file or nested dict updating ``default_mlip_hypers.yaml``
    overrides : dotted keys, ``{"training.max_steps": 100}`` or ``["training.max_steps=100"]``
    resume : continue from ``output_dir/checkpoint.pt`` (hypers default to the checkpoint's;
        the model, loss and data sections must not change, the training section may)
    overwrite : replace the outputs of an earlier run in ``output_dir``
    device : ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    progress : tqdm progress bar
    export : write ``model.pt`` and ``validation.json`` at the end

    Multi-GPU: launch with ``torchrun --nproc_per_node=K`` as for the stride trainer.
    """
    proc = setup_process(device)
    out = Path(output_dir)
    resuming = check_output_dir(out, resume, overwrite)
    h, ckpt = resume_hypers(out, resuming, hypers, overrides, "mlip")
    paths, tdata, train_idx, val_idx = load_training_data(data, h, ckpt)
    task = MLIPTask(h, paths, tdata, train_idx, val_idx, proc, ckpt)
    return run_training(task, h, out, proc, ckpt=ckpt, overwrite=overwrite, progress=progress, export=export)
