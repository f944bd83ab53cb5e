"""The stride-model protocol, and saving/loading models that follow it.

A *stride model* is a TorchScript module with

``forward(positions, velocities, masses, atomic_numbers, box) -> (new_positions, new_velocities)``

=================  =========  ======  =====================================================
argument           shape      units   meaning
=================  =========  ======  =====================================================
positions          [N, 3]     nm      positions at time t
velocities         [N, 3]     nm/ps   velocities at time t
masses             [N]        Da      particle masses
atomic_numbers     [N] int64  --      elements (0 where unknown)
box                [3, 3]     nm      periodic cell, one vector per row; all zeros when the
                                      system is not periodic
new_positions      [N, 3]     nm      positions at t + stride
new_velocities     [N, 3]     nm/ps   velocities at t + stride
=================  =========  ======  =====================================================

A model whose metadata lists ``"verlet_guess"`` in ``inputs`` takes two more arguments,
``guess_displacement`` [N, 3] nm and ``guess_velocities`` [N, 3] nm/ps: where velocity
Verlet with the System's constraints goes over the stride in ``guess_substeps`` substeps
when the forces stay frozen at time t, except those of the Force classes listed in
``guess_fast_forces``, recomputed at every substep (see :mod:`openmm_flashmd.integrator.guess`);
:class:`~openmm_flashmd.integrator.FlashMDIntegrator` computes them on the platform.
Models without it keep the five-argument ``forward``.

and two attributes readable from the scripted module:

* ``stride`` (float): the time the model advances, in ps;
* ``metadata_json`` (str): a JSON object; the keys this package reads are listed in
  :data:`METADATA_DEFAULTS` (elements, per-element masses, cutoff, periodicity,
  particle count, hypers, training provenance, validation errors).

A model computes in its own dtype and returns tensors in the dtype of ``positions``.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Dict, Union

import torch

#: Keys of ``metadata_json`` and what they mean when a model leaves them out.
METADATA_DEFAULTS: Dict[str, Any] = {
    "kind": "unknown",        # e.g. "pet", "harmonic", "free-particle"
    "elements": [],           # supported atomic numbers; empty = any element
    "masses": {},             # atomic number (as str) -> mass in Da the model was trained with
    "cutoff": None,           # nm; None for models without a cutoff
    "periodic": None,         # True / False; None = works with and without a cell
    "num_particles": None,    # int for models tied to one particle count; None = any
    "hypers": {},
    "provenance": {},         # training data, dataset hash, package versions
    "validation": {},         # validation errors measured at export
    "inputs": [],             # optional inputs after ``box``, in order; only "verlet_guess" exists
    "guess_substeps": 1,      # substeps of the Verlet guess (models with the "verlet_guess" input)
    "guess_fast_forces": [],  # Force classes the guess recomputes per substep; empty = all frozen
}

#: Range of strides (ps) a model may declare: 0.01 fs to 10 ps.
MIN_STRIDE, MAX_STRIDE = 1e-5, 10.0

#: Optional inputs a stride model may declare in ``metadata_json["inputs"]``.
OPTIONAL_INPUTS = ("verlet_guess",)

ModelLike = Union[torch.jit.ScriptModule, torch.nn.Module, str, os.PathLike]


class ModelProtocolError(ValueError):
    """A module does not follow the stride-model protocol."""


def make_metadata_json(**fields: Any) -> str:
    """Serialise metadata fields, refusing keys the protocol does not define."""
    unknown = set(fields) - set(METADATA_DEFAULTS)
    if unknown:
        raise ModelProtocolError(f"unknown metadata keys: {sorted(unknown)}")
    merged = copy.deepcopy(METADATA_DEFAULTS)
    merged.update(fields)
    if merged["masses"]:
        merged["masses"] = {str(int(z)): float(m) for z, m in merged["masses"].items()}
    merged["elements"] = sorted(int(z) for z in merged["elements"])
    return json.dumps(merged, sort_keys=True)


def read_metadata(model: torch.nn.Module) -> Dict[str, Any]:
    """Return the metadata of a stride model as a dict, with ``stride`` (ps) added.

    Raises :class:`ModelProtocolError` when the module lacks ``stride`` or
    ``metadata_json`` or its stride is not a positive number.
    """
    if not hasattr(model, "stride"):
        raise ModelProtocolError("stride model has no 'stride' attribute (the stride in ps)")
    stride = float(getattr(model, "stride"))
    if not MIN_STRIDE <= stride <= MAX_STRIDE:
        raise ModelProtocolError(f"stride model has stride {stride} ps; it must be between {MIN_STRIDE} and "
                                 f"{MAX_STRIDE} ps")
    merged = metadata_fields(model, "stride model")
    unknown = [name for name in merged["inputs"] or [] if name not in OPTIONAL_INPUTS]
    if unknown:
        raise ModelProtocolError(f"stride model declares unknown inputs {unknown}; known: {list(OPTIONAL_INPUTS)}")
    merged["stride"] = stride
    return merged


def metadata_fields(model: torch.nn.Module, what: str) -> Dict[str, Any]:
    """``model.metadata_json`` parsed and merged over :data:`METADATA_DEFAULTS` (all defaults
    when it is missing or empty); ``what`` names the model in errors. Raises
    :class:`ModelProtocolError` unless it is a JSON object."""
    raw = getattr(model, "metadata_json", "{}") or "{}"
    try:
        fields = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as err:
        raise ModelProtocolError(f"{what} metadata_json is not valid JSON: {err}") from None
    if not isinstance(fields, dict):
        raise ModelProtocolError(f"{what} metadata_json must hold a JSON object")
    merged = copy.deepcopy(METADATA_DEFAULTS)
    merged.update(fields)
    return merged


def script_model(model: torch.nn.Module) -> torch.jit.ScriptModule:
    """Return ``model`` as a TorchScript module (scripting it if needed)."""
    if isinstance(model, torch.jit.ScriptModule):
        return model
    try:
        return torch.jit.script(model)
    except Exception as err:  # torch raises many types here
        raise ModelProtocolError(f"stride model cannot be scripted with torch.jit.script: {err}") from err


def save_model(model: torch.nn.Module, path: Union[str, os.PathLike], overwrite: bool = False) -> Path:
    """Script (if needed) and save a stride model with :func:`torch.jit.save`.

    Refuses to replace an existing file unless ``overwrite`` is true. Returns the path.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    scripted = script_model(model)
    read_metadata(scripted)  # refuse to write a model that breaks the protocol
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(scripted, str(tmp))
    os.replace(tmp, path)
    return path


def load_model(model: ModelLike, map_location: str = "cpu") -> torch.jit.ScriptModule:
    """Return a scripted stride model from a module, a file path or a bundled model name.

    Bundled names (e.g. ``"water-16fs"``) are looked up with
    :func:`openmm_flashmd.model.bundled.bundled_model_path`.
    """
    if isinstance(model, torch.nn.Module):
        scripted = script_model(model)
    else:
        path = Path(model)
        if not path.exists():
            from openmm_flashmd.model.bundled import bundled_model_path

            path = bundled_model_path(str(model))
        try:
            scripted = torch.jit.load(str(path), map_location=map_location)
        except Exception as err:
            if "metatomic" in str(err) or "metatensor" in str(err):  # their classes are not registered yet
                return _load_metatomic(path)
            raise ModelProtocolError(f"{path} is not a TorchScript stride model: {err}") from err
        if not hasattr(scripted, "stride") and hasattr(scripted, "capabilities"):
            return _load_metatomic(path)
    read_metadata(scripted)
    return scripted


def _load_metatomic(path: Path) -> torch.jit.ScriptModule:
    """A metatrain FlashMD export (metatomic AtomisticModel) as a stride model (optional extra)."""
    try:
        from openmm_flashmd.metatomic import load_metatomic_stride_model
    except ImportError as err:
        raise ModelProtocolError(f"{path} is a metatomic model: {err}") from None
    return load_metatomic_stride_model(path)
