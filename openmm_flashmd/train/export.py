"""Export trained PET models (stride models and energy models / MLIPs) as TorchScript
files with full metadata, and rebuild them from trainer checkpoints or from exported files."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from openmm_flashmd.model.protocol import make_metadata_json, read_metadata, save_model

__all__ = ["export_model", "export_energy_model", "model_from_checkpoint", "export_checkpoint", "model_from_file",
           "average_models"]


def export_model(
    model: torch.nn.Module,
    path: Union[str, os.PathLike],
    provenance: Optional[Dict[str, Any]] = None,
    validation: Optional[Dict[str, Any]] = None,
    overwrite: bool = False,
) -> Path:
    """Script ``model`` (on CPU, in its dtype) and save it with :func:`save_model`.

    The metadata keep the model's own fields (kind, stride, elements, masses, cutoff,
    periodicity, hypers) and are updated with ``provenance`` (dataset SHA-256, data path,
    split, package versions, ...) and ``validation`` (errors measured on held-out
    segments). Refuses an existing ``path`` unless ``overwrite``.
    """
    from openmm_flashmd.data.schema import package_versions

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    module = copy.deepcopy(model).cpu().eval()
    meta = read_metadata(module)
    fields = {k: v for k, v in meta.items() if k != "stride"}
    prov = dict(fields.get("provenance") or {})
    prov.update(provenance or {})
    prov.setdefault("package_versions", package_versions())
    fields["provenance"] = prov
    if validation is not None:
        fields["validation"] = validation
    if hasattr(module, "update_metadata"):  # PETStrideModel keeps its own copy of the fields
        module.update_metadata(provenance=prov, validation=validation)
    else:
        module.metadata_json = make_metadata_json(**fields)
    return save_model(module, path, overwrite=overwrite)


def export_energy_model(
    model: torch.nn.Module,
    path: Union[str, os.PathLike],
    provenance: Optional[Dict[str, Any]] = None,
    validation: Optional[Dict[str, Any]] = None,
    overwrite: bool = False,
) -> Path:
    """Script an energy model (:class:`~openmm_flashmd.model.energy.PETEnergyModel`, on
    CPU, in its dtype) and save it with :func:`torch.jit.save`, atomically.

    ``provenance`` updates the model's recorded provenance (package versions are added)
    and ``validation`` replaces its validation errors, via ``update_metadata``. Refuses an
    existing ``path`` unless ``overwrite``.
    """
    from openmm_flashmd.data.schema import package_versions

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    module = copy.deepcopy(model).cpu().eval()
    prov = dict(getattr(module, "provenance", None) or {})
    prov.update(provenance or {})
    prov.setdefault("package_versions", package_versions())
    module.update_metadata(provenance=prov, validation=validation)
    scripted = torch.jit.script(module)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.jit.save(scripted, str(tmp))
    os.replace(tmp, path)
    return path


def model_from_checkpoint(checkpoint: Union[str, os.PathLike, Dict[str, Any]], best: bool = True) -> torch.nn.Module:
    """Rebuild the model stored in a trainer checkpoint (the best-validation weights when
    ``best``): a :class:`~openmm_flashmd.model.pet.PETStrideModel` from ``train``, a
    :class:`~openmm_flashmd.model.energy.PETEnergyModel` from ``train_mlip``."""
    from openmm_flashmd.model.pet import PETHypers, PETStrideModel

    ckpt = checkpoint if isinstance(checkpoint, dict) else torch.load(checkpoint, map_location="cpu", weights_only=False)
    spec = ckpt["model_spec"]
    if ckpt.get("task", "stride") == "mlip":
        from openmm_flashmd.model.energy import PETEnergyModel

        model = PETEnergyModel(PETHypers.from_dict(spec["hypers"]), spec["elements"], spec["periodic"],
                               spec["provenance"])
    else:
        model = PETStrideModel.build(
            PETHypers.from_dict(spec["hypers"]), spec["stride"], spec["elements"],
            {int(k): v for k, v in spec["masses"].items()}, spec["periodic"], spec["provenance"],
        )
    dtype = torch.float64 if spec.get("dtype") == "float64" else torch.float32
    model.to(dtype)
    state = ckpt["best_state"] if best and ckpt.get("best_state") is not None else ckpt["model_state"]
    model.load_state_dict(state)
    return model


def export_checkpoint(
    checkpoint: Union[str, os.PathLike], path: Union[str, os.PathLike], best: bool = True, overwrite: bool = False
) -> Path:
    """Export the model of a trainer checkpoint (see :func:`model_from_checkpoint`)."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = model_from_checkpoint(ckpt, best=best)
    if ckpt.get("task", "stride") == "mlip":
        return export_energy_model(model, path, validation=ckpt.get("validation"), overwrite=overwrite)
    return export_model(model, path, validation=ckpt.get("validation"), overwrite=overwrite)


def model_from_file(path: Union[str, os.PathLike]) -> torch.nn.Module:
    """The PET stride model saved in ``path`` (or a bundled model's name) rebuilt under this
    version's model code: same architecture, weights, dtype and metadata string.

    A TorchScript file keeps the code it was exported with; rebuilding (then :func:`save_model`)
    gives an older model the model code's later changes, e.g. the speed-ups of the PET forward,
    whose results agree with the old code's to float32 round-off."""
    from openmm_flashmd.model.pet import PETStrideModel
    from openmm_flashmd.model.protocol import load_model

    source = load_model(path)
    metadata = read_metadata(source)
    model = PETStrideModel.from_metadata(metadata)
    state = source.state_dict()
    model.to(next(iter(state.values())).dtype)
    model.load_state_dict(state)
    model.metadata_json = source.metadata_json
    return model.eval()


#: Metadata that two stride models must share for their weights to be averaged.
_AVERAGE_MUST_MATCH = ("kind", "stride", "elements", "masses", "periodic", "hypers", "inputs")


def average_models(first: Union[str, os.PathLike], second: Union[str, os.PathLike], weight: float) -> torch.nn.Module:
    """A PET stride model whose weights are ``(1 - weight) * first + weight * second`` (files or
    bundled names), every floating-point parameter and buffer (the output scales included).

    Meant for two models trained from the same start (e.g. a model and a fine-tune of it), whose
    average lies between them ("model soup"); the result keeps ``first``'s metadata with the
    average recorded in its provenance (``weight_average``) and no held-out errors (measure them
    with :func:`~openmm_flashmd.train.evaluate.evaluate`). Raises ``ValueError`` unless the two
    share architecture, stride, elements, masses and inputs, or when ``weight`` is outside [0, 1].
    """
    weight = float(weight)
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be between 0 and 1, got {weight}")
    models = [model_from_file(path) for path in (first, second)]
    metadata = [read_metadata(m) for m in models]
    for key in _AVERAGE_MUST_MATCH:
        if metadata[0].get(key) != metadata[1].get(key):
            raise ValueError(f"cannot average {first} and {second}: their {key} differ "
                             f"({metadata[0].get(key)} / {metadata[1].get(key)})")
    states = [m.state_dict() for m in models]
    averaged = {name: (1.0 - weight) * value + weight * states[1][name] if value.is_floating_point() else value
                for name, value in states[0].items()}
    model = models[0]
    model.load_state_dict(averaged)
    provenance = dict(metadata[0].get("provenance") or {})
    provenance["weight_average"] = {"first": str(first), "second": str(second), "weight": weight,
                                    "first_provenance": metadata[0].get("provenance"),
                                    "second_provenance": metadata[1].get("provenance")}
    model.update_metadata(provenance=provenance, validation={})  # the first model's errors are not the average's
    return model
