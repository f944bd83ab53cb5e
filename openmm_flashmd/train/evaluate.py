"""Accuracy of a stride model on reference trajectories, against trivial baselines.

For every pair ``(q, v)(t) -> (q, v)(t + stride)`` of held-out segments the model's
displacement ``dq`` (nm) and new velocity ``v'`` (nm/ps) are compared with the reference.
Errors are reported per element as the root mean square of the error **vector**
(``sqrt(<|e|^2>)`` over atoms and pairs), next to two baselines:

* free flight: ``dq = v * stride``;
* unchanged velocities: ``v' = v``.

Per element it also reports the **kinetic-energy ratio** ``<|v'_model|^2> / <|v'_ref|^2>``
(one element has one mass, so this is the ratio of kinetic energies after one stride). A
model trained on a mean-square loss predicts the conditional mean of what it cannot
resolve, so it damps velocities; a ratio below 1 is the kinetic energy it removes per
stride, which the energy filter and thermostat then have to put back (often into the
wrong atoms: that is how per-element temperatures drift apart).

With ``rollout = R > 1`` it also applies the model R times in a row to its own output
and reports the position and velocity errors after each stride against the reference states
``j`` strides on, next to free flight over the same time: how fast one-stride errors compound
(what ``loss.rollout`` trains against). A free-flight model takes its output as it is; a
Verlet-guess model's next stride starts as in the integrator, from the output constrained
and its Verlet guess, both computed with OpenMM on the data's System
(:class:`~openmm_flashmd.train.openmm_system.OpenMMStateGuess`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from openmm_flashmd.data.dataset import (
    StridePairs,
    TrajectoryData,
    evaluation_segments,
    load_trajectories,
    random_orthogonal,
    subsample,
    turned_inputs,
)
from openmm_flashmd.data.guess import data_system, verlet_guesses
from openmm_flashmd.integrator.guess import guess_fast_forces, model_uses_guess
from openmm_flashmd.train.openmm_system import OpenMMStateGuess

__all__ = ["ModelDataMismatch", "evaluate", "check_model_matches_data", "format_table", "format_rollout",
           "rollout_errors", "stride_errors"]

_SYMBOLS = {0: "X", 1: "H", 6: "C", 7: "N", 8: "O", 9: "F", 11: "Na", 15: "P", 16: "S", 17: "Cl", 18: "Ar", 19: "K"}


class ModelDataMismatch(ValueError):
    """The model was not made for this data (elements, masses, stride or periodicity)."""


def _symbol(z: int) -> str:
    if z in _SYMBOLS:
        return _SYMBOLS[z]
    try:
        from openmm.app import Element

        return Element.getByAtomicNumber(int(z)).symbol
    except Exception:
        return f"Z{z}"


def check_model_matches_data(metadata: Dict[str, Any], data: TrajectoryData, stride: Optional[float] = None) -> None:
    """Raise :class:`ModelDataMismatch` if the model's elements, masses (Da), periodicity,
    constraints (rigid vs flexible, when the model records it) or particle count do not fit
    ``data``, or if ``stride`` (ps) differs from the model's."""
    elements = set(int(z) for z in metadata.get("elements") or [])
    data_elements = set(int(z) for z in np.unique(data.atomic_numbers))
    if elements and not data_elements <= elements:
        raise ModelDataMismatch(
            f"the data contain elements {sorted(data_elements - elements)} the model does not know "
            f"(model elements {sorted(elements)})"
        )
    masses = {int(k): float(v) for k, v in (metadata.get("masses") or {}).items()}
    for z, m in (data.element_masses() if masses else {}).items():
        if z in masses and abs(masses[z] - m) > 1e-3 * max(1.0, m):
            raise ModelDataMismatch(f"element {z}: the model was trained with mass {masses[z]} Da, the data use {m} Da")
    periodic = metadata.get("periodic")
    if periodic is not None and bool(periodic) != bool(data.periodic):
        raise ModelDataMismatch(f"the model is for {'periodic' if periodic else 'non-periodic'} systems; the data are "
                                f"{'periodic' if data.periodic else 'not periodic'}")
    trained_constrained = (metadata.get("provenance") or {}).get("constraints_active")
    if trained_constrained is not None and bool(trained_constrained) != bool(data.constraints_active):
        raise ModelDataMismatch(f"the model was trained on data {'with' if trained_constrained else 'without'} "
                                f"constraints; these data are {'constrained' if data.constraints_active else 'flexible'}")
    n = metadata.get("num_particles")
    if n is not None and int(n) != data.n_atoms:
        raise ModelDataMismatch(f"the model is for {n} particles; the data have {data.n_atoms}")
    if stride is not None and "stride" in metadata and abs(float(metadata["stride"]) - stride) > 1e-9 * stride:
        raise ModelDataMismatch(f"the model's stride is {metadata['stride']} ps, not {stride} ps")


def stride_errors(
    dq_pred: torch.Tensor, v_pred: torch.Tensor, batch: Dict[str, torch.Tensor], atomic_numbers: np.ndarray,
    sums: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Accumulate squared errors of a batch into ``sums`` (created if None): per element,
    sums of ``|dq - dq_ref|^2`` for the model and free flight, ``|v' - v'_ref|^2`` for the
    model and unchanged velocities, ``|v'|^2`` of the model and the reference, and atom
    counts; when the batch has the Verlet guess, also its errors (``dq_guess``, ``v_guess``)."""
    if sums is None:
        sums = {}
    q0, v0 = batch["positions"].double(), batch["velocities"].double()
    dq_ref = batch["new_positions"].double() - q0
    v_ref = batch["new_velocities"].double()
    tau = batch["stride"].double().view(-1, 1, 1)
    terms = {
        "dq": ((dq_pred.double().cpu() - dq_ref) ** 2).sum(-1),
        "dq_free_flight": ((v0 * tau - dq_ref) ** 2).sum(-1),
        "v": ((v_pred.double().cpu() - v_ref) ** 2).sum(-1),
        "v_unchanged": ((v0 - v_ref) ** 2).sum(-1),
        "v2_model": (v_pred.double().cpu() ** 2).sum(-1),
        "v2_reference": (v_ref ** 2).sum(-1),
    }
    if "guess" in batch:
        terms["dq_guess"] = ((batch["guess"].double() - dq_ref) ** 2).sum(-1)
        terms["v_guess"] = ((batch["guess_velocities"].double() - v_ref) ** 2).sum(-1)
    return _add_per_element(terms, atomic_numbers, sums)


def _add_per_element(terms: Dict[str, torch.Tensor], atomic_numbers: np.ndarray,
                     sums: Dict[int, Dict[str, float]]) -> Dict[int, Dict[str, float]]:
    """Add each ``[B, N]`` term's sum over every element's atoms to ``sums[Z][name]``, and the
    element's atom count over the batch to ``sums[Z]["count"]``."""
    z = torch.as_tensor(atomic_numbers)
    n_items = next(iter(terms.values())).shape[0]
    for element in np.unique(atomic_numbers).tolist():
        mask = z == element
        entry = sums.setdefault(int(element), {k: 0.0 for k in list(terms) + ["count"]})
        for key, value in terms.items():
            entry[key] += float(value[:, mask].sum())
        entry["count"] += int(mask.sum()) * n_items
    return sums


def _predict(scripted: Any, batch: Dict[str, torch.Tensor], masses: torch.Tensor, numbers: torch.Tensor,
             uses_guess: bool, batched: bool, device: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """The model's new positions (nm) and velocities (nm/ps) for a batch, float64 on the CPU."""
    extra = [batch[k].to(device) for k in ("guess", "guess_velocities")] if uses_guess else []
    if batched:
        new_q, new_v = scripted.forward_batch(batch["positions"].to(device), batch["velocities"].to(device), masses,
                                              numbers, batch["box"].to(device), *extra)
        return new_q.double().cpu(), new_v.double().cpu()
    outs = [scripted(batch["positions"][b].to(device), batch["velocities"][b].to(device), masses, numbers,
                     batch["box"][b].to(device), *(t[b] for t in extra)) for b in range(batch["positions"].shape[0])]
    return torch.stack([o[0] for o in outs]).double().cpu(), torch.stack([o[1] for o in outs]).double().cpu()


def _summarise(sums: Dict[int, Dict[str, float]]) -> Dict[str, Any]:
    def block(entries):
        count = sum(e["count"] for e in entries)
        out = {"n_atom_samples": int(count)}
        for key in ("dq", "dq_free_flight", "v", "v_unchanged", "dq_guess", "v_guess"):
            if all(key in e for e in entries):
                out[key + "_rmse"] = float(np.sqrt(sum(e[key] for e in entries) / max(count, 1)))
        out["dq_improvement"] = out["dq_free_flight_rmse"] / max(out["dq_rmse"], 1e-300)
        out["v_improvement"] = out["v_unchanged_rmse"] / max(out["v_rmse"], 1e-300)
        return out

    def element(z, e):
        ratio = e["v2_model"] / max(e["v2_reference"], 1e-300)
        return dict(symbol=_symbol(z), kinetic_energy_ratio=ratio, **block([e]))

    result = {"per_element": {str(z): element(z, e) for z, e in sorted(sums.items())}}
    result["all"] = block(list(sums.values()))
    return result


def format_table(result: Dict[str, Any]) -> str:
    """A plain-text table of an :func:`evaluate` result (dq in nm, v' in nm/ps)."""
    head = (f"{'element':>8} {'dq RMSE':>11} {'free flight':>11} {'ratio':>7} "
            f"{'v RMSE':>11} {'unchanged':>11} {'ratio':>7} {'KE ratio':>8}")
    lines = [f"stride {result['stride']} ps, {result['n_pairs']} pairs, segments: {result['segments_used']}",
             "dq in nm, v' in nm/ps; ratio = baseline RMSE / model RMSE; "
             "KE ratio = model / reference kinetic energy after the stride", head, "-" * len(head)]
    rows = [(e["symbol"], e) for e in result["per_element"].values()] + [("all", result["all"])]
    guess = "dq_guess_rmse" in result["all"]
    if guess:
        lines[2] += f" {'dq guess':>11} {'v guess':>11}"
        lines[1] += "; guess = the frozen-force Verlet guess the model corrects"
    constrained = all("dq_constrained_rmse" in e for e in result["per_element"].values())
    if constrained:
        lines[2] += f" {'dq constr.':>11} {'v constr.':>11} {'KE constr.':>10}"
        lines[1] += "; constr. = the model's errors after the constraint projection"
    for name, e in rows:
        lines.append(
            f"{name:>8} {e['dq_rmse']:11.4e} {e['dq_free_flight_rmse']:11.4e} {e['dq_improvement']:7.1f} "
            f"{e['v_rmse']:11.4e} {e['v_unchanged_rmse']:11.4e} {e['v_improvement']:7.1f} "
            + (f"{e['kinetic_energy_ratio']:8.3f}" if "kinetic_energy_ratio" in e else f"{'-':>8}")
            + (f" {e['dq_guess_rmse']:11.4e} {e['v_guess_rmse']:11.4e}" if guess else "")
            + (f" {e['dq_constrained_rmse']:11.4e} {e['v_constrained_rmse']:11.4e} "
               f"{e['kinetic_energy_ratio_constrained']:10.3f}" if constrained and "dq_constrained_rmse" in e else "")
        )
    energy = result.get("energy_error_per_stride")
    for name in ("model", "guess"):
        if energy and name in energy:
            e = energy[name]
            lines.append(f"energy error per stride ({name}, kJ/mol, mean ± sd): potential {e['potential']['mean']:+.2f} "
                         f"± {e['potential']['sd']:.2f}, kinetic {e['kinetic']['mean']:+.2f} ± {e['kinetic']['sd']:.2f}, "
                         f"total {e['total']['mean']:+.2f} ± {e['total']['sd']:.2f}")
            if "potential_orientations_only" in e:
                centres, orientations = e["potential_centres_only"], e["potential_orientations_only"]
                lines.append(f"potential energy error of the molecules' centres alone {centres['mean']:+.2f} ± "
                             f"{centres['sd']:.2f}, of their orientations alone {orientations['mean']:+.2f} ± "
                             f"{orientations['sd']:.2f}")
    frame = [(e["symbol"], e) for e in result["per_element"].values() if "dq_frame_rms" in e]
    if frame:
        lines.append("frame dependence (rms change of a stride predicted in a randomly turned frame): "
                     + ", ".join(f"{name} dq {e['dq_frame_rms']:.2e} nm, v' {e['v_frame_rms']:.3f} nm/ps"
                                 for name, e in frame))
    motion = result.get("molecule_kinetic_energy_ratio")
    if motion:
        lines.append("molecules' kinetic-energy ratio after the projection (model / reference): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in motion.items()))
    if "rollout" in result:
        lines.append(format_rollout(result["rollout"]))
    return "\n".join(lines)


def rollout_errors(scripted: Any, data: TrajectoryData, stride: float, loaded: Sequence[int], strides: int,
                   max_starts: Optional[int], seed: int, device: str, batch_size: int,
                   guesser: Optional[OpenMMStateGuess] = None) -> Dict[str, Any]:
    """Errors of ``strides`` consecutive model strides from held-out starts (see the module
    docstring): ``{"strides", "n_starts", "per_stride": [{"time_ps", "q_rmse", "v_rmse",
    "q_free_flight_rmse", "per_element": {symbol: {"q_rmse", "v_rmse"}}}, ...]}`` (nm, nm/ps).
    A Verlet-guess model needs its ``guesser`` (an ``OpenMMStateGuess`` of the data's System)."""
    starts = StridePairs(data, stride, segments=loaded, rollout=strides)
    order = subsample(len(starts), max_starts, seed)
    if len(order) == 0:
        raise ValueError(f"no segment has room for {strides} strides")
    masses = torch.as_tensor(data.masses).to(device)
    numbers = torch.as_tensor(data.atomic_numbers).to(device)
    z = np.asarray(data.atomic_numbers)
    sq = np.zeros((strides, 3, len(z)))  # per stride: model q, model v, free-flight q; per atom sums
    with torch.no_grad():
        for first in range(0, len(order), batch_size):
            batch = starts.get_batch(order[first:first + batch_size])
            truth_q = torch.cat([batch["new_positions"][:, None], batch["rollout_positions"]], 1).double()
            truth_v = torch.cat([batch["new_velocities"][:, None], batch["rollout_velocities"]], 1).double()
            q, v = batch["positions"].to(device), batch["velocities"].to(device)
            for j in range(strides):
                guess = []
                if guesser is not None:  # constrained (a no-op at the data's start) and its guess
                    q, v, *guess = guesser(q, v, batch["box"])
                q, v = scripted.forward_batch(q, v, masses, numbers, batch["box"].to(device), *guess)
                free = batch["positions"].double() + batch["velocities"].double() * stride * (j + 1)
                for row, (x, ref) in enumerate(((q, truth_q[:, j]), (v, truth_v[:, j]), (free, truth_q[:, j]))):
                    sq[j, row] += ((x.double().cpu() - ref) ** 2).sum(-1).sum(0).numpy()
    n = len(order)
    per_stride = []
    for j in range(strides):
        rms = lambda row, mask=slice(None): float(np.sqrt(sq[j, row, mask].sum() / (n * z[mask].size)))  # noqa: E731
        per_stride.append({"time_ps": stride * (j + 1), "q_rmse": rms(0), "v_rmse": rms(1), "q_free_flight_rmse": rms(2),
                           "per_element": {_symbol(e): {"q_rmse": rms(0, z == e), "v_rmse": rms(1, z == e)}
                                           for e in np.unique(z).tolist()}})
    return {"strides": int(strides), "n_starts": int(n), "per_stride": per_stride}


def format_rollout(rollout: Dict[str, Any]) -> str:
    """Plain-text lines of :func:`rollout_errors` (nm, nm/ps)."""
    lines = [f"rollout: the model applied {rollout['strides']} times to its own output from {rollout['n_starts']} "
             "starts (q error in nm, v' error in nm/ps, against the reference that many strides on)",
             f"{'time (ps)':>10} {'q RMSE':>11} {'free flight':>11} {'v RMSE':>11}"]
    lines += [f"{r['time_ps']:10.4f} {r['q_rmse']:11.4e} {r['q_free_flight_rmse']:11.4e} {r['v_rmse']:11.4e}"
              for r in rollout["per_stride"]]
    return "\n".join(lines)


def energy_state(context, **options):
    """``context.getState(getEnergy=True, **options)`` with autograd on: a TorchForce MLIP in the
    System (openmm-torch runs its backward pass in this thread) fails under ``torch.no_grad()``."""
    with torch.enable_grad():
        return context.getState(getEnergy=True, **options)


class EnergyErrors:
    """Per-stride energy errors of predictions against the reference, on the data's System.

    For each pair, the predicted positions are constrained (as the integrator does after a
    stride; tolerance 1e-8) and the predicted velocities projected; then potential,
    kinetic (½ m v² of those velocities: OpenMM's ``getKineticEnergy`` would shift them by
    half a step of force, as for its leapfrog integrators) and total energy (kJ/mol) are
    compared with the reference frame at t + stride.
    The same is done for the Verlet guess when the batch has it. With constraints, the
    position (nm) and velocity (nm/ps) errors of the model after that projection are summed
    per element too (:meth:`constrained_errors`): the errors the integrator keeps; in a System of
    several molecules, so are the molecules' translational and rotational kinetic energies
    (:meth:`molecule_kinetic_energy_ratios`), and the potential-energy error is split into the
    molecules' centres and their orientations (:meth:`summary`). A model that conserves
    energy on held-out strides but heats up in a simulation is sensitive to states off the
    data's manifold; one that is already biased here will drift in any run.
    """

    def __init__(self, data: TrajectoryData):
        import openmm

        from openmm_flashmd.analysis.molecules import solvent_molecules
        from openmm_flashmd.data.guess import data_system
        from openmm_flashmd.systems.loading import make_platform

        system = data_system(data)
        self.context = openmm.Context(system, openmm.VerletIntegrator(0.001), make_platform("CPU"))
        self.constrained = system.getNumConstraints() > 0
        self.periodic = data.periodic
        self.masses = data.masses[:, None]
        numbers = np.asarray(data.atomic_numbers)
        self.element_masks = {int(z): numbers == z for z in np.unique(numbers).tolist()}
        self.errors: Dict[str, List[List[float]]] = {"model": [], "guess": []}
        # element -> [sum |dx|^2, sum |dv|^2, atom samples, sum |v|^2 model, sum |v|^2 reference]
        self.squared: Dict[int, List[float]] = {}
        self.molecules = solvent_molecules(self.context)
        # "translation" / "rotation" -> [sum of the model's temperatures, sum of the reference's]
        self.motion: Dict[str, List[float]] = {"translation": [0.0, 0.0], "rotation": [0.0, 0.0]}
        # per pair: the potential-energy error of the molecules' centres alone, and of their orientations alone
        self.potential_split: List[List[float]] = []

    def _energies(self, x: np.ndarray, v: np.ndarray, box: np.ndarray) -> Tuple[float, float, np.ndarray, np.ndarray]:
        """Potential and kinetic energy (kJ/mol) after the constraint projection, and the
        projected positions (nm) and velocities (nm/ps)."""
        from openmm import unit

        if self.periodic:
            self.context.setPeriodicBoxVectors(*box)
        self.context.setPositions(x)
        self.context.setVelocities(v)
        if self.constrained:
            self.context.applyConstraints(1e-8)
            self.context.applyVelocityConstraints(1e-8)
        state = energy_state(self.context, getVelocities=True, getPositions=True)
        projected = state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        return (state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole),
                float(0.5 * (self.masses * projected ** 2).sum()), np.asarray(positions), np.asarray(projected))

    def add(self, new_q: torch.Tensor, new_v: torch.Tensor, batch: Dict[str, torch.Tensor]) -> None:
        """Accumulate the errors of predictions ``new_q`` [B,N,3] nm, ``new_v`` [B,N,3] nm/ps."""
        for b in range(new_q.shape[0]):
            box = batch["box"][b].double().numpy()
            reference = self._energies(batch["new_positions"][b].double().numpy(),
                                       batch["new_velocities"][b].double().numpy(), box)
            predictions = [("model", new_q[b], new_v[b])]
            if "guess" in batch:
                predictions.append(("guess", batch["positions"][b] + batch["guess"][b], batch["guess_velocities"][b]))
            for name, q, v in predictions:
                pe, ke, x, u = self._energies(q.double().numpy(), v.double().numpy(), box)
                self.errors[name].append([pe - reference[0], ke - reference[1]])
                if name == "model" and self.molecules:
                    self._add_motion(x, u, reference[2], reference[3], box)
                    self._add_potential_split(x, reference, box)
                if name == "model" and self.constrained:
                    dx2 = ((x - reference[2]) ** 2).sum(-1)
                    dv2 = ((u - reference[3]) ** 2).sum(-1)
                    v2_model, v2_reference = (u ** 2).sum(-1), (reference[3] ** 2).sum(-1)
                    for z, mask in self.element_masks.items():
                        entry = self.squared.setdefault(z, [0.0, 0.0, 0, 0.0, 0.0])
                        entry[0] += float(dx2[mask].sum())
                        entry[1] += float(dv2[mask].sum())
                        entry[2] += int(mask.sum())
                        entry[3] += float(v2_model[mask].sum())
                        entry[4] += float(v2_reference[mask].sum())

    def _add_motion(self, x: np.ndarray, v: np.ndarray, x_ref: np.ndarray, v_ref: np.ndarray, box: np.ndarray) -> None:
        from openmm_flashmd.analysis.thermo import molecule_temperatures

        box = box if self.periodic else None
        model = molecule_temperatures(x, v, self.masses[:, 0], self.molecules, box)
        reference = molecule_temperatures(x_ref, v_ref, self.masses[:, 0], self.molecules, box)
        for key, sums in self.motion.items():
            sums[0] += float(model[key])
            sums[1] += float(reference[key])

    def _add_potential_split(self, x: np.ndarray, reference: Tuple, box: np.ndarray) -> None:
        """The potential-energy errors (kJ/mol) of the reference's molecules moved to the predicted
        centres, and of the predicted molecules moved to the reference's centres."""
        from openmm_flashmd.analysis.molecules import place_molecules

        box_or_none = box if self.periodic else None
        masses = self.masses[:, 0]
        centres_only = place_molecules(reference[2], x, masses, self.molecules, box_or_none)
        orientations_only = place_molecules(x, reference[2], masses, self.molecules, box_or_none)
        self.potential_split.append([self._energies(y, reference[3], box)[0] - reference[0]
                                     for y in (centres_only, orientations_only)])

    def molecule_kinetic_energy_ratios(self) -> Dict[str, float]:
        """The model's kinetic energy of the molecules' ``translation`` and ``rotation`` after a
        stride (after the constraint projection) over the reference's, summed over the pairs
        (:func:`openmm_flashmd.analysis.thermo.molecule_temperatures`); empty unless the System
        has several molecules of more than one atom. Below 1: the model damps that motion."""
        if not self.molecules or not self.errors["model"]:
            return {}
        return {key: sums[0] / max(sums[1], 1e-300) for key, sums in self.motion.items()}

    def constrained_errors(self) -> Dict[str, Dict[str, float]]:
        """Per element (atomic number as a string): RMSE of the model's positions (nm) and
        velocities (nm/ps) after the constraint projection against the reference, as
        ``dq_constrained_rmse`` and ``v_constrained_rmse``, and the kinetic-energy ratio of the
        projected velocities, ``kinetic_energy_ratio_constrained`` (empty without constraints)."""
        return {str(z): {"dq_constrained_rmse": float(np.sqrt(e[0] / e[2])),
                         "v_constrained_rmse": float(np.sqrt(e[1] / e[2])),
                         "kinetic_energy_ratio_constrained": e[3] / max(e[4], 1e-300)}
                for z, e in sorted(self.squared.items())}

    def summary(self, n_atoms: int) -> Dict[str, Any]:
        """Mean and standard deviation (kJ/mol per stride) of the potential, kinetic and total
        energy errors, for the model and (when present) the Verlet guess; in a System of several
        molecules, the model's also split into ``potential_centres_only`` (the reference's
        molecules at the predicted centres of mass) and ``potential_orientations_only`` (the
        predicted molecules, orientation and internal geometry, at the reference's centres)."""
        out: Dict[str, Any] = {"n_atoms": int(n_atoms)}
        for name, rows in self.errors.items():
            if not rows:
                continue
            e = np.asarray(rows)
            parts = {"potential": e[:, 0], "kinetic": e[:, 1], "total": e.sum(1)}
            if name == "model" and self.potential_split:
                split = np.asarray(self.potential_split)
                parts.update(potential_centres_only=split[:, 0], potential_orientations_only=split[:, 1])
            out[name] = {k: {"mean": float(v.mean()), "sd": float(v.std())} for k, v in parts.items()}
        return out


def evaluate(
    model: Any,
    data: Union[str, os.PathLike, TrajectoryData],
    stride: Optional[float] = None,
    segments: Union[None, str, Sequence[int]] = None,
    max_pairs: Optional[int] = 2000,
    batch_size: int = 1,
    output_json: Union[None, str, os.PathLike] = None,
    overwrite: bool = False,
    device: str = "cpu",
    seed: int = 0,
    energy: bool = True,
    rollout: int = 1,
    frame_check: bool = True,
) -> Dict[str, Any]:
    """Per-element RMSE of ``dq`` and ``v'`` of ``model`` on ``data`` vs trivial baselines,
    and (with ``energy``) the energy error per stride on the data's System (:class:`EnergyErrors`).

    Parameters
    ----------
    model : a stride model (module, file path or bundled name; see
        :func:`openmm_flashmd.model.protocol.load_model`)
    data : trajectory file (or loaded :class:`TrajectoryData`)
    stride : ps; defaults to (and must equal) the model's stride
    segments : indices of the file's segments to use, ``"all"``, or None: the validation
        segments recorded in the model's provenance when it was trained on this very file
        (same SHA-256), else all segments
    max_pairs : evaluate a random subset of at most this many pairs (None = all)
    batch_size : pairs per call; >1 needs a model with ``forward_batch`` (PET models)
    output_json : write the result there (refuses an existing file unless ``overwrite``)
    device : torch device for the model
    rollout : > 1: also the errors of that many consecutive strides (:func:`rollout_errors`,
        from at most ``max_pairs`` starts; free-flight PET models only), under ``rollout``
    frame_check : predict every pair once more in a frame turned by a random orthogonal matrix
        (drawn with ``seed``) and report per element the rms difference of that prediction,
        rotated back, from the first: ``dq_frame_rms`` (nm) and ``v_frame_rms`` (nm/ps). An
        equivariant model gives 0; the integrator turns the system at random every stride, so
        this is the noise a model's frame dependence adds to each stride (one more model call
        per pair)

    Returns a dict with ``stride``, ``n_pairs``, ``segments_used``, ``per_element``
    (``{Z: {symbol, dq_rmse, dq_free_flight_rmse, dq_improvement, v_rmse,
    v_unchanged_rmse, v_improvement, kinetic_energy_ratio, n_atom_samples}}``) and
    ``all`` (the same without ``kinetic_energy_ratio``, which is per element only); with
    ``energy`` and constraints, per element also ``dq_constrained_rmse`` (nm) and
    ``v_constrained_rmse`` (nm/ps) after the constraint projection and the kinetic-energy ratio
    ``kinetic_energy_ratio_constrained`` of the projected velocities; with
    ``energy``, ``energy_error_per_stride`` (kJ/mol: mean and sd of the potential, kinetic
    and total energy errors of the model and of the Verlet guess) and, in a System of several
    molecules, ``molecule_kinetic_energy_ratio`` (translation and rotation, model / reference,
    after the projection: :meth:`EnergyErrors.molecule_kinetic_energy_ratios`).
    """
    from openmm_flashmd.model.protocol import load_model, read_metadata

    if output_json is not None and Path(output_json).exists() and not overwrite:
        raise FileExistsError(f"{output_json} exists; pass overwrite=True to replace it")
    scripted = load_model(model, map_location=device) if not isinstance(model, torch.nn.Module) else model
    meta = read_metadata(scripted)
    if stride is None:
        stride = float(meta["stride"])
    data = data if isinstance(data, TrajectoryData) else load_trajectories(data)
    check_model_matches_data(meta, data, stride)

    loaded, segments_used = evaluation_segments(data, segments, meta.get("provenance") or {})
    uses_guess = model_uses_guess(meta)
    if rollout > 1 and not hasattr(scripted, "forward_batch"):  # before any work
        raise ValueError("a rollout evaluation needs a batched model (one with forward_batch)")
    guesses = None
    guess_program = dict(substeps=int(meta["guess_substeps"]), fast_forces=guess_fast_forces(meta))
    if uses_guess:
        guesses = {"forward": verlet_guesses(data, stride, segments=loaded, **guess_program)}
    pairs = StridePairs(data, stride, segments=loaded, guesses=guesses)
    order = subsample(len(pairs), max_pairs, seed)
    if len(order) == 0:
        raise ValueError("no pairs to evaluate")

    masses = torch.as_tensor(data.masses).to(device)
    numbers = torch.as_tensor(data.atomic_numbers).to(device)
    batched = batch_size > 1 and hasattr(scripted, "forward_batch")
    step = batch_size if batched else 1
    sums: Dict[int, Dict[str, float]] = {}
    energies = EnergyErrors(data) if energy else None
    turns = torch.Generator().manual_seed(seed)
    frame_sums: Dict[int, Dict[str, float]] = {}
    with torch.no_grad():
        for start in range(0, len(order), step):
            batch = pairs.get_batch(order[start:start + step])
            new_q, new_v = _predict(scripted, batch, masses, numbers, uses_guess, batched, device)
            stride_errors(new_q - batch["positions"], new_v, batch, data.atomic_numbers, sums)
            if energies is not None:
                energies.add(new_q, new_v, batch)
            if frame_check:
                rot = random_orthogonal(batch["positions"].shape[0], turns)
                turned = turned_inputs(batch, rot)
                turned_q, turned_v = _predict(scripted, turned, masses, numbers, uses_guess, batched, device)
                dq = torch.bmm(turned_q - turned["positions"], rot) - (new_q - batch["positions"])
                dv = torch.bmm(turned_v, rot) - new_v
                _add_per_element({"dq": (dq ** 2).sum(-1), "v": (dv ** 2).sum(-1)}, data.atomic_numbers, frame_sums)
    result = {"stride": float(stride), "n_pairs": int(len(order)), "segments_used": segments_used,
              "data": str(data.path), "dataset_sha256": data.sha256}
    result.update(_summarise(sums))
    for z, entry in frame_sums.items():
        result["per_element"][str(z)].update(dq_frame_rms=float(np.sqrt(entry["dq"] / entry["count"])),
                                             v_frame_rms=float(np.sqrt(entry["v"] / entry["count"])))
    if energies is not None:
        result["energy_error_per_stride"] = energies.summary(data.n_atoms)
        motion = energies.molecule_kinetic_energy_ratios()
        if motion:
            result["molecule_kinetic_energy_ratio"] = motion
        for z, errors in energies.constrained_errors().items():
            result["per_element"][z].update(errors)
    if rollout > 1:
        guesser = OpenMMStateGuess(data_system(data), stride, **guess_program) if uses_guess else None
        result["rollout"] = rollout_errors(scripted, data, stride, loaded, rollout, max_pairs, seed, device,
                                           max(batch_size, 1), guesser)
    if output_json is not None:
        Path(output_json).parent.mkdir(parents=True, exist_ok=True)
        Path(output_json).write_text(json.dumps(result, indent=2))
    return result
