"""Train a PET stride model on reference trajectories.

``train(data, output_dir, stride, ...)`` writes into ``output_dir``:

=====================  =================================================================
file                   content
=====================  =================================================================
``hypers.yaml``        the full hyper-parameters used
``split.json``         training / validation segment indices (file indices)
``log.csv``            one row per validation: step, epoch, lr, train and validation losses,
                       validation RMSE of dq (nm) and v' (nm/ps), wall time (s)
``loss_curve.png``     training and validation loss against step
``checkpoint.pt``      everything needed to resume (model, optimiser, schedule, RNG, best
                       weights, early-stopping state)
``model.pt``           the exported TorchScript stride model (best validation weights)
``validation.json``    per-element errors of ``model.pt`` on the validation segments
=====================  =================================================================

Loss (see ``default_hypers.yaml``): weighted, normalised MSE of the mass-scaled
targets ``y_q = dq sqrt(m)`` and ``y_p = v' sqrt(m)``, plus an optional energy-
conservation term ``((H(q', v') - H(q, v)) / (N kB T))^2`` (``loss.energy``) and an optional
potential-energy term ``((U(q') - U(q'_ref)) / (N kB T))^2`` (``loss.potential_energy``; both on the
predicted state after the first-order constraint projection; the potential is the data's own System
through OpenMM, :class:`~openmm_flashmd.train.openmm_system.OpenMMPotential`, or an
``energy_model(positions [N, 3] nm, box [3, 3] nm) -> potential energy, kJ/mol``
differentiable with respect to positions), an optional per-element kinetic-energy
term, and an optional multi-stride rollout term (the model applied to its own predictions,
compared with the reference states further on; gradients flow through the whole rollout).

The optimisation itself (schedule, early stopping, checkpoints, resume, logging, DDP)
is the shared engine of :mod:`openmm_flashmd.train.engine`; this module is the stride
*task*: data pairs, scales, loss, validation metrics and export.

Multi-GPU: launch with ``torchrun --nproc_per_node=K`` (each process picks
``cuda:LOCAL_RANK``; gradients are averaged with DistributedDataParallel; only rank 0
writes files). The single-process path is the tested one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from openmm_flashmd.data.dataset import StridePairs, TrajectoryData, random_orthogonal, stride_frames, turned_inputs
from openmm_flashmd.data.guess import data_system, noisy_frames, pair_guesses
from openmm_flashmd.train.engine import (
    ENGINE_FILES, ProcessInfo, TrainingTask, TrainResult, check_output_dir, load_training_data, resume_hypers,
    run_training, setup_process,
)
from openmm_flashmd.train.evaluate import _summarise, stride_errors
from openmm_flashmd.train.openmm_system import OpenMMPotential, OpenMMStateGuess
from openmm_flashmd.train.projection import ConstraintProjector
from openmm_flashmd.model.pet import KB_KJ_PER_MOL_K

__all__ = ["train", "StrideTask", "TrainResult", "OUTPUT_FILES", "KB"]

KB = KB_KJ_PER_MOL_K  # kJ/mol/K (one constant, from the PET module)

OUTPUT_FILES = ENGINE_FILES


def _scales(data: TrajectoryData, segments: np.ndarray, k: int, momentum_difference: bool,
            guess: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Dict[str, float]:
    """rms per component over the training pairs of u = v sqrt(m), of the learned parts
    (dq - v tau) sqrt(m) and (v' - v) sqrt(m) (or v' sqrt(m)); with the forward Verlet
    ``guess`` (g, w) the learned parts are (dq - g) sqrt(m) and (v' - w) sqrt(m), and the
    guess inputs' scales (g - v tau) sqrt(m) and (w - v) sqrt(m) are added."""
    sqrt_m = np.sqrt(data.masses)[None, None, :, None]
    q = data.positions[segments]
    v = data.velocities[segments]
    tau = k * data.record_interval
    u = v * sqrt_m
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))  # noqa: E731
    if guess is not None:
        g, w = (a[segments][:, :-k] for a in guess)
        return {"velocity_scale": rms(u), "dq_scale": rms((q[:, k:] - q[:, :-k] - g) * sqrt_m),
                "p_scale": rms((v[:, k:] - w) * sqrt_m), "guess_scale": rms((g - v[:, :-k] * tau) * sqrt_m),
                "guess_velocity_scale": rms((w - v[:, :-k]) * sqrt_m)}
    res_q = (q[:, k:] - q[:, :-k] - v[:, :-k] * tau) * sqrt_m
    res_p = (v[:, k:] - v[:, :-k]) * sqrt_m if momentum_difference else v[:, k:] * sqrt_m
    return {"velocity_scale": rms(u), "dq_scale": rms(res_q), "p_scale": rms(res_p)}


def initial_weights(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """Weights to start a training from (``training.init_from``): a stride model file
    (``model.pt``) or a trainer checkpoint (its best weights). The architecture must match."""
    try:
        return torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        return ckpt.get("best_state") or ckpt["model_state"]


def _guess_inputs(batch: Dict[str, torch.Tensor]):
    """The Verlet guess of a batch as extra model arguments (none when the batch has none)."""
    return [batch[k] for k in ("guess", "guess_velocities") if k in batch]


def constraint_reference(batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The positions (nm) the integrator's constraint solver corrects a stride's output from: the
    start, or the end of the Verlet guess (which ends with a solve) for models that take it."""
    return batch["positions"] + batch["guess"] if "guess" in batch else batch["positions"]


def constrained_prediction(projector: Optional[ConstraintProjector], q: torch.Tensor, v: torch.Tensor,
                           batch: Dict[str, torch.Tensor], sqrt_m: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Predicted positions (nm) and velocities (nm/ps) ``[B, N, 3]`` as the integrator's SHAKE/SETTLE
    and RATTLE leave them, to first order around the batch's reference end state (unchanged
    without a ``projector``, i.e. for data without constraints); ``sqrt_m`` ``[1, N, 1]``, sqrt(Da)."""
    if projector is None:
        return q, v
    e_q = (q - batch["new_positions"]) * sqrt_m
    end_q = batch["new_positions"] + projector.positions(e_q, constraint_reference(batch), batch["new_positions"]) / sqrt_m
    e_p = (v - batch["new_velocities"]) * sqrt_m
    return end_q, batch["new_velocities"] + projector.velocities(e_p, batch["new_positions"]) / sqrt_m


class _ScaledForward(torch.nn.Module):
    """``forward(batch)`` -> mass-scaled predictions ``(y_q, y_p)`` of the first stride (what
    DDP wraps) and a dict of the later strides the loss needs:

    * a rollout batch: ``rollout_q``, ``rollout_v``, the predicted positions and velocities
      after strides 2..R ``[B, R - 1, N, 3]`` (nm, nm/ps), each stride started from the last
      prediction; a Verlet-guess model's ``guesser`` first constrains that prediction and
      computes its guess on the data's System, as the integrator would (gradients pass the
      constraint solve unchanged and do not flow through the guess);
    * with a ``rotations`` generator: ``rotated_q``, ``rotated_p`` [B, N, 3], the mass-scaled
      predictions for the same items turned by a random orthogonal matrix each (positions,
      velocities, cell and guess), rotated back to the batch's frame;
    * with ``reversal``: ``return_q``, ``return_v`` [B, N, 3] (nm, nm/ps), the model applied
      again to its own prediction with the velocities negated. With a ``projector`` (data
      with constraints) the prediction is first constrained as the integrator would, to first
      order. A Verlet-guess model's guess for that return is the batch's ``return_guess``
      (from the reference target) corrected for the predicted velocities as free flight under
      frozen forces would be: the forces stay the target's (the prediction's are not known
      during training) and the constraints' rotation of the correction is not followed.
    """

    def __init__(self, model: torch.nn.Module, masses: torch.Tensor, numbers: torch.Tensor, reversal: bool = False,
                 projector: Optional[ConstraintProjector] = None, guesser: Optional[OpenMMStateGuess] = None,
                 rotations: Optional[torch.Generator] = None):
        super().__init__()
        self.model = model
        self.masses = masses
        self.numbers = numbers
        self.reversal = reversal
        self.projector = projector
        self.guesser = guesser
        self.rotations = rotations

    def forward(self, batch: Dict[str, torch.Tensor]):
        y_q, y_p = self.model.forward_scaled_batch(batch["positions"], batch["velocities"], self.masses, self.numbers,
                                                   batch["box"], *_guess_inputs(batch))
        later: Dict[str, torch.Tensor] = {}
        if self.rotations is not None:  # the same items once more in a random frame, outputs rotated back
            rot = random_orthogonal(y_q.shape[0], self.rotations).to(y_q)
            turned = turned_inputs(batch, rot)
            r_q, r_p = self.model.forward_scaled_batch(turned["positions"], turned["velocities"], self.masses,
                                                       self.numbers, turned["box"], *_guess_inputs(turned))
            later.update(rotated_q=torch.bmm(r_q, rot), rotated_p=torch.bmm(r_p, rot))
        sqrt_m = self.masses.sqrt().view(1, -1, 1)
        q, v = batch["positions"] + y_q / sqrt_m, y_p / sqrt_m
        if self.reversal:  # (the rollout below starts from the unconstrained prediction)
            end_q, end_v = constrained_prediction(self.projector, q, v, batch, sqrt_m)
            guess = []
            if "return_guess" in batch:  # frozen-force guess: linear in the start velocities
                dv = end_v - batch["new_velocities"]
                guess = [batch["return_guess"] - dv * batch["stride"].view(-1, 1, 1), batch["return_guess_velocities"] - dv]
            dq, p = self.model.forward_scaled_batch(end_q, -end_v, self.masses, self.numbers, batch["box"], *guess)
            later.update(return_q=end_q + dq / sqrt_m, return_v=p / sqrt_m)
        if "rollout_positions" in batch:
            later_q, later_v = [], []
            for _ in range(batch["rollout_positions"].shape[1]):
                guess = []
                if self.guesser is not None:  # the integrator's constraint solve, then the guess
                    q, v, *guess = self.guesser(q, v, batch["box"])
                dq, p = self.model.forward_scaled_batch(q, v, self.masses, self.numbers, batch["box"], *guess)
                q, v = q + dq / sqrt_m, p / sqrt_m
                later_q.append(q)
                later_v.append(v)
            later.update(rollout_q=torch.stack(later_q, 1), rollout_v=torch.stack(later_v, 1))
        return y_q, y_p, later


class _Losses:
    def __init__(self, weights: Dict[str, float], scales: Dict[str, float], masses: torch.Tensor,
                 temperature: float, energy_model: Optional[Callable], numbers: Optional[torch.Tensor] = None,
                 projector: Optional[ConstraintProjector] = None):
        self.w_q, self.w_p, self.w_e = (float(weights["positions"]), float(weights["velocities"]),
                                        float(weights["energy"]))
        self.w_ke = float(weights.get("kinetic_energy", 0.0))
        self.w_u = float(weights.get("potential_energy", 0.0))
        self.w_rollout = float(weights.get("rollout", 0.0))
        self.w_reversal = float(weights.get("reversal", 0.0))
        self.w_equivariance = float(weights.get("equivariance", 0.0))
        # one mask per element: the kinetic-energy term compares each element's mean |v' sqrt(m)|^2
        self.element_masks = ([] if numbers is None or self.w_ke == 0 else
                              [numbers == z for z in torch.unique(numbers).tolist()])
        self.inv_q2 = 1.0 / scales["dq_scale"] ** 2
        self.inv_p2 = 1.0 / scales["p_scale"] ** 2
        self.masses = masses
        self.sqrt_m = masses.sqrt().view(1, -1, 1)
        self.kT = KB * temperature
        self.energy_model = energy_model if self.w_e > 0 or self.w_u > 0 else None
        # the weight of the error parts the integrator's constraint projection removes (1: plain MSE)
        self.w_removed = float(weights.get("constraint_removed", 1.0))
        # the data's constraint projection (None: no constraints). It splits the errors of L_q and L_p
        # when w_removed != 1, and the kinetic-energy term compares the velocities RATTLE keeps
        self.projector = projector
        self.split_errors = projector is not None and self.w_removed != 1.0

    def __call__(self, y_q, y_p, batch, later: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
        """Loss parts; ``later``: the later strides of :class:`_ScaledForward`. A rollout's
        predicted positions and velocities after strides 2..R are compared with the batch's
        ``rollout_positions`` and ``rollout_velocities``, a return stride's with the start with
        negated velocities (a position error of a later stride is scaled like the first
        stride's, so a rollout that stays on the reference costs what its first stride costs)."""
        later = later or {}
        t_q = (batch["new_positions"] - batch["positions"]) * self.sqrt_m
        t_p = batch["new_velocities"] * self.sqrt_m
        e_q, e_p = y_q - t_q, y_p - t_p
        kept_p = None  # the velocity error RATTLE keeps, when something needs it
        if self.projector is not None and (self.split_errors or self.element_masks):
            kept_p = self.projector.velocities(e_p, batch["new_positions"])
        if not self.split_errors:
            loss_q = (e_q ** 2).mean() * self.inv_q2
            loss_p = (e_p ** 2).mean() * self.inv_p2
        else:  # what the integrator's constraint projection keeps, plus w_removed x what it removes
            kept_q = self.projector.positions(e_q, constraint_reference(batch), batch["new_positions"])
            loss_q = (kept_q ** 2 + self.w_removed * (e_q - kept_q) ** 2).mean() * self.inv_q2
            loss_p = (kept_p ** 2 + self.w_removed * (e_p - kept_p) ** 2).mean() * self.inv_p2
        total = self.w_q * loss_q + self.w_p * loss_p
        out = {"loss_q": loss_q, "loss_p": loss_p}
        if self.w_rollout > 0 and "rollout_q" in later:
            loss_rollout = self._state_loss(later["rollout_q"], later["rollout_v"], batch["rollout_positions"],
                                            batch["rollout_velocities"], self.sqrt_m.unsqueeze(1))
            total = total + self.w_rollout * loss_rollout
            out["loss_rollout"] = loss_rollout
        if self.w_reversal > 0 and "return_q" in later:
            loss_reversal = self._state_loss(later["return_q"], later["return_v"], batch["positions"],
                                             -batch["velocities"], self.sqrt_m)
            total = total + self.w_reversal * loss_reversal
            out["loss_reversal"] = loss_reversal
        if self.w_equivariance > 0 and "rotated_q" in later:
            loss_equivariance = (((y_q - later["rotated_q"]) ** 2).mean() * self.inv_q2
                                 + ((y_p - later["rotated_p"]) ** 2).mean() * self.inv_p2)
            total = total + self.w_equivariance * loss_equivariance
            out["loss_equivariance"] = loss_equivariance
        if self.element_masks:
            kept = y_p if kept_p is None else t_p + kept_p
            terms = []
            for mask in self.element_masks:
                predicted = (kept[:, mask] ** 2).sum(-1).mean()
                target = (t_p[:, mask] ** 2).sum(-1).mean()
                terms.append(((predicted - target) / target) ** 2)
            loss_ke = torch.stack(terms).mean()
            total = total + self.w_ke * loss_ke
            out["loss_ke"] = loss_ke
        if self.energy_model is not None:
            n = self.masses.shape[0]
            new_q, new_v = constrained_prediction(self.projector, batch["positions"] + y_q / self.sqrt_m,
                                                  y_p / self.sqrt_m, batch, self.sqrt_m)
            energy_terms, potential_terms = [], []
            for b in range(y_q.shape[0]):
                u1 = self.energy_model(new_q[b], batch["box"][b])
                with torch.no_grad():
                    if self.w_e > 0:
                        h0 = self.energy_model(batch["positions"][b], batch["box"][b]) + \
                            0.5 * (self.masses.view(-1, 1) * batch["velocities"][b] ** 2).sum()
                    if self.w_u > 0:
                        u_ref = self.energy_model(batch["new_positions"][b], batch["box"][b])
                if self.w_e > 0:
                    h1 = u1 + 0.5 * (self.masses.view(-1, 1) * new_v[b] ** 2).sum()
                    energy_terms.append(((h1 - h0) / (n * self.kT)) ** 2)
                if self.w_u > 0:
                    potential_terms.append(((u1 - u_ref) / (n * self.kT)) ** 2)
            if energy_terms:
                loss_e = torch.stack(energy_terms).mean()
                total = total + self.w_e * loss_e
                out["loss_e"] = loss_e
            if potential_terms:
                loss_u = torch.stack(potential_terms).mean()
                total = total + self.w_u * loss_u
                out["loss_u"] = loss_u
        out["loss"] = total
        return out

    def _state_loss(self, q, v, ref_q, ref_v, sqrt_m) -> torch.Tensor:
        """Scaled squared errors of predicted states against reference states (nm, nm/ps)."""
        return (((q - ref_q) * sqrt_m) ** 2).mean() * self.inv_q2 + (((v - ref_v) * sqrt_m) ** 2).mean() * self.inv_p2


class StrideTask(TrainingTask):
    """A PET stride model learning ``(q, v)(t) -> (q, v)(t + stride)`` from trajectory pairs."""

    name = "stride"
    train_parts = ("loss_q", "loss_p", "loss_e", "loss_u", "loss_ke", "loss_rollout", "loss_reversal",
                   "loss_equivariance")
    val_fields = ("val_loss_q", "val_loss_p", "val_loss_rollout", "val_dq_rmse", "val_v_rmse")

    def __init__(self, h: Dict[str, Any], paths: Sequence[Any], tdata: TrajectoryData, stride: float,
                 train_idx: np.ndarray, val_idx: np.ndarray, proc: ProcessInfo, ckpt: Optional[Dict[str, Any]],
                 energy_model: Optional[Callable], progress: bool = False):
        from openmm_flashmd.model.pet import PETHypers, PETStrideModel

        t, hd = h["training"], h["data"]
        self.h, self.tdata, self.stride = h, tdata, stride
        self.train_idx, self.val_idx = train_idx, val_idx
        self.device = proc.device
        k = stride_frames(stride, tdata.record_interval, tdata.frames_per_segment)
        dtype = torch.float64 if t["dtype"] == "float64" else torch.float32
        self.seed(int(t["seed"]), proc.rank)
        phypers = PETHypers.from_dict(h["model"])
        guesses = None
        show = progress and proc.is_main
        rollout = int(h["loss"]["rollout_strides"]) if float(h["loss"]["rollout"]) > 0 else 1
        self.reversal = float(h["loss"]["reversal"]) > 0
        if self.reversal and phypers.verlet_guess and not hd["time_reversal"]:
            raise ValueError("loss.reversal of a Verlet-guess model needs data.time_reversal (the guesses from "
                             "negated velocities)")
        # a Verlet-guess model's later rollout strides start from predicted states: OpenMM on the data's System
        fast = list(phypers.guess_fast_forces)
        self.guesser = (OpenMMStateGuess(data_system(tdata), stride, phypers.guess_substeps, fast_forces=fast)
                        if rollout > 1 and phypers.verlet_guess else None)
        if phypers.verlet_guess:  # computed with OpenMM on the data's System (deterministic on CPU)
            guesses = pair_guesses(tdata, stride, phypers.guess_substeps, hd["time_reversal"],
                                   segments=np.concatenate([train_idx, val_idx]), progress=show, fast_forces=fast)
        noisy = None
        if float(hd["input_noise"]) > 0:  # noise injection: one noisy copy of every training frame
            states = noisy_frames(tdata, float(hd["input_noise"]), int(t["seed"]), segments=train_idx, progress=show)
            noisy = {"states": states, "fraction": float(hd["noisy_fraction"])}
            if guesses is not None:
                noisy["guesses"] = pair_guesses(tdata, stride, phypers.guess_substeps, hd["time_reversal"],
                                                segments=train_idx, progress=show, states=states, fast_forces=fast)
        self.set_datasets(
            StridePairs(tdata, stride, train_idx, time_reversal=hd["time_reversal"],
                        random_rotations=hd["random_rotations"], dtype=dtype, generator=self.generator,
                        guesses=guesses, noisy=noisy, rollout=rollout,
                        return_guesses=self.reversal and guesses is not None),
            # with a rollout loss, validation starts carry their rollout too, so the best model is
            # chosen by the loss it was trained on
            StridePairs(tdata, stride, val_idx, dtype=dtype, rollout=rollout,
                        guesses=None if guesses is None else {"forward": guesses["forward"]}) if len(val_idx) else None,
            int(t["max_validation_pairs"]), "no training pairs: segments too short for this stride?",
        )

        self.scales = (ckpt["scales"] if ckpt is not None
                       else _scales(tdata, train_idx, k, phypers.predict_momentum_difference,
                                    None if guesses is None else guesses["forward"]))
        self.provenance = {
            "dataset_sha256": tdata.sha256,
            "data": [str(Path(p.path if isinstance(p, TrajectoryData) else p).name) for p in paths],
            "data_description": str(tdata.attrs.get("description", "")),
            "data_temperature": tdata.temperature,
            "record_interval": tdata.record_interval,
            "data_timestep": tdata.timestep,  # the reference MD's timestep (ps): the fallback MD's default
            "constraints_active": bool(tdata.constraints_active),
            "training_segments": self.file_ids(train_idx),
            "validation_segments": self.file_ids(val_idx),
            "scales": self.scales,
        }
        element_masses = tdata.element_masses()
        self.spec = {"hypers": phypers.to_dict(), "stride": stride, "elements": sorted(element_masses),
                     "masses": {str(z): m for z, m in element_masses.items()}, "periodic": bool(tdata.periodic),
                     "provenance": self.provenance, "dtype": t["dtype"]}
        self.model = PETStrideModel.build(phypers, stride, self.spec["elements"], element_masses,
                                          self.spec["periodic"], self.provenance)
        if t.get("init_from") and ckpt is None:
            self.model.load_state_dict(initial_weights(t["init_from"]))
        # after init_from: its normalisation buffers belong to its own data (and stride); the losses use these
        self.model.set_scales(self.scales["velocity_scale"], self.scales["dq_scale"], self.scales["p_scale"],
                              self.scales.get("guess_scale"), self.scales.get("guess_velocity_scale"))
        self.model.to(dtype=dtype, device=self.device)
        self.masses = torch.as_tensor(tdata.masses, dtype=dtype, device=self.device)
        self.numbers = torch.as_tensor(tdata.atomic_numbers, device=self.device)
        removed = float(h["loss"]["constraint_removed"])
        if removed != 1.0 and not tdata.constraints_active:
            raise ValueError("loss.constraint_removed other than 1 needs data with constraints (its System has none)")
        self.projector = ConstraintProjector(tdata.constraints, self.masses) if tdata.constraints_active else None
        energy_terms = float(h["loss"]["energy"]) > 0 or float(h["loss"].get("potential_energy", 0.0)) > 0
        if energy_terms and energy_model is None:  # the data's own System, through OpenMM
            energy_model = OpenMMPotential(data_system(tdata))
        self.losses = _Losses(h["loss"], self.scales, self.masses, tdata.temperature, energy_model, self.numbers,
                              self.projector)
        # the validation loss (best-model choice) weighs the constrained parts as the training loss does
        self.plain_losses = _Losses({"positions": 1, "velocities": 1, "energy": 0, "rollout": 1,
                                     "constraint_removed": removed}, self.scales, self.masses, tdata.temperature,
                                    None, projector=self.projector)

    def forward_module(self) -> torch.nn.Module:
        rotations = self.generator if self.losses.w_equivariance > 0 else None
        return _ScaledForward(self.model, self.masses, self.numbers, self.reversal, self.projector, self.guesser,
                              rotations)

    def loss(self, outputs, batch):
        return self.losses(*outputs[:2], batch, outputs[2])

    def validate(self) -> Dict[str, Any]:
        if self.val_ds is None:
            return {"val_loss": math.nan, "val_loss_q": math.nan, "val_loss_p": math.nan,
                    "val_loss_rollout": math.nan, "val_dq_rmse": math.nan, "val_v_rmse": math.nan}
        sums: Dict = {}
        lq = lp = lr = 0.0
        n = 0
        sqrt_m = self.masses.sqrt().view(1, -1, 1)
        # the validation loss has no return stride
        forward = _ScaledForward(self.model, self.masses, self.numbers, guesser=self.guesser)
        with torch.no_grad():
            bs = int(self.h["training"]["batch_size"]) * 4
            for s in range(0, len(self.val_order), bs):
                host = self.val_ds.get_batch(self.val_order[s:s + bs])
                batch = self._to_dev(host)
                y_q, y_p, later = forward(batch)
                parts = self.plain_losses(y_q, y_p, batch, later)
                m = y_q.shape[0]
                lq += float(parts["loss_q"]) * m
                lp += float(parts["loss_p"]) * m
                lr += float(parts.get("loss_rollout", 0.0)) * m
                n += m
                stride_errors((y_q / sqrt_m).cpu(), (y_p / sqrt_m).cpu(), host, self.tdata.atomic_numbers, sums)
        summary = _summarise(sums)
        w = self.losses  # lr is 0 without a rollout loss: its batches carry no rollout
        return {"val_loss": (w.w_q * lq + w.w_p * lp + w.w_rollout * lr) / n,
                "val_loss_q": lq / n, "val_loss_p": lp / n,
                "val_loss_rollout": lr / n if w.w_rollout > 0 else math.nan,
                "val_dq_rmse": summary["all"]["dq_rmse"], "val_v_rmse": summary["all"]["v_rmse"],
                "summary": summary}

    def final_validation(self, val: Dict[str, Any], best_step: int) -> Dict[str, Any]:
        validation = {"loss": val["val_loss"], "step": best_step}
        if "summary" in val:
            validation.update({"errors": val["summary"], "segments": self.file_ids(self.val_idx),
                               "stride": self.stride, "n_pairs": int(len(self.val_order))})
        return validation

    def export(self, path: Path, validation: Dict[str, Any]) -> Path:
        from openmm_flashmd.train.export import export_model

        return export_model(self.model, path, provenance=self.provenance, validation=validation, overwrite=True)


# ------------------------------------------------------------------------------- train

def train(
    data: Union[str, os.PathLike, TrajectoryData, Sequence[Union[str, os.PathLike]]],
    output_dir: Union[str, os.PathLike],
    stride: float,
    hypers: Union[None, str, os.PathLike, Mapping[str, Any]] = None,
    overrides: Union[None, Mapping[str, Any], Sequence[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    energy_model: Optional[Callable] = None,
    progress: bool = True,
    export: bool = True,
    stop_after: Optional[int] = None,
) -> TrainResult:
    """Train a PET stride model for ``stride`` ps on trajectory file(s) ``data``.

    Parameters
    ----------
    data : trajectory file(s) from :func:`openmm_flashmd.data.generate.generate` (several
        files must hold the same system and record settings)
    output_dir : directory for logs, checkpoints and the exported model
    stride : ps; a multiple of the data's record interval
    hypers : YAML file or nested dict updating ``default_hypers.yaml``
    overrides : dotted keys, ``{"training.max_steps": 100}`` or ``["training.max_steps=100"]``
    resume : continue from ``output_dir/checkpoint.pt`` (hypers default to the checkpoint's;
        the model, loss and data sections must not change, the training section may)
    overwrite : replace the outputs of an earlier run in ``output_dir``
    device : ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    energy_model : the potential of the energy-conservation term (``loss.energy`` > 0), called as
        ``energy_model(positions [N,3] nm, box [3,3] nm)``, returning kJ/mol, differentiable
        with respect to the positions (default: the data's own System through OpenMM)
    progress : tqdm progress bar
    export : write ``model.pt`` and ``validation.json`` at the end
    stop_after : stop at this step with a checkpoint and no export (``resume`` continues)
    """
    proc = setup_process(device)
    out = Path(output_dir)
    resuming = check_output_dir(out, resume, overwrite)
    h, ckpt = resume_hypers(out, resuming, hypers, overrides, "stride")
    paths, tdata, train_idx, val_idx = load_training_data(data, h, ckpt)
    k = stride_frames(stride, tdata.record_interval, tdata.frames_per_segment)
    stride = k * tdata.record_interval
    if ckpt is not None and not math.isclose(ckpt["model_spec"]["stride"], stride):
        raise ValueError(f"cannot resume: checkpoint stride is {ckpt['model_spec']['stride']} ps, not {stride} ps")
    task = StrideTask(h, paths, tdata, stride, train_idx, val_idx, proc, ckpt, energy_model, progress)
    return run_training(task, h, out, proc, ckpt=ckpt, overwrite=overwrite, progress=progress, export=export,
                        stop_after=stop_after)
