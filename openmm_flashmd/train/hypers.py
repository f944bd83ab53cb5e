"""Training hyper-parameters: documented defaults per task plus overrides.

=========  ===========================  ===============================================
task       defaults                     trainer
=========  ===========================  ===============================================
stride     ``default_hypers.yaml``      :func:`openmm_flashmd.train.trainer.train`
mlip       ``default_mlip_hypers.yaml`` :func:`openmm_flashmd.train.mlip.train_mlip`
=========  ===========================  ===============================================

Both files have the sections ``model`` (PET architecture, :class:`PETHypers`),
``training`` (the shared engine, :mod:`openmm_flashmd.train.engine`), ``loss`` and
``data`` (task-specific).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Union

import yaml

DEFAULT_HYPERS_PATH = Path(__file__).resolve().parent / "default_hypers.yaml"
DEFAULT_MLIP_HYPERS_PATH = Path(__file__).resolve().parent / "default_mlip_hypers.yaml"

#: task name -> file of documented defaults
DEFAULTS = {"stride": DEFAULT_HYPERS_PATH, "mlip": DEFAULT_MLIP_HYPERS_PATH}

__all__ = ["DEFAULT_HYPERS_PATH", "DEFAULT_MLIP_HYPERS_PATH", "DEFAULTS", "default_hypers", "load_hypers",
           "parse_overrides"]


def default_hypers(task: str = "stride") -> Dict[str, Any]:
    """The defaults of ``task`` (``"stride"`` or ``"mlip"``) as a fresh nested dict."""
    if task not in DEFAULTS:
        raise ValueError(f"unknown training task {task!r}; known: {sorted(DEFAULTS)}")
    with open(DEFAULTS[task]) as f:
        return yaml.safe_load(f)


def parse_overrides(overrides: Union[None, Mapping[str, Any], Iterable[str]]) -> Dict[str, Any]:
    """Turn ``{"training.learning_rate": 1e-3}`` or ``["training.learning_rate=1e-3"]`` into a
    dotted-key dict (string values are parsed as YAML scalars)."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    out: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def _merge(base: Dict[str, Any], update: Mapping[str, Any], where: str) -> None:
    for key, value in update.items():
        if key not in base:
            raise ValueError(f"unknown hyper-parameter {where}{key!r}; known: {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"hyper-parameter section {where}{key!r} must be a mapping")
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = _coerce(base[key], value, f"{where}{key}")


def _coerce(default: Any, value: Any, name: str) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: convert strings where the default is a number."""
    if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"hyper-parameter {name!r} must be a number, got {value!r}") from None
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def load_hypers(
    hypers: Union[None, str, os.PathLike, Mapping[str, Any]] = None,
    overrides: Union[None, Mapping[str, Any], Iterable[str]] = None,
    task: str = "stride",
) -> Dict[str, Any]:
    """Defaults of ``task``, updated by ``hypers`` (a YAML file or a nested dict; only the
    keys to change) and then by ``overrides`` (dotted keys). Unknown keys raise ``ValueError``."""
    result = default_hypers(task)
    if hypers is not None:
        if isinstance(hypers, Mapping):
            update = copy.deepcopy(dict(hypers))
        else:
            with open(hypers) as f:
                update = yaml.safe_load(f) or {}
            if not isinstance(update, Mapping):
                raise ValueError(f"{hypers} must hold a YAML mapping")
        _merge(result, update, "")
    for dotted, value in parse_overrides(overrides).items():
        parts = dotted.split(".")
        nested: Dict[str, Any] = {}
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        _merge(result, nested, "")
    _validate(result)
    return result


def _validate(h: Dict[str, Any]) -> None:
    t = h["training"]
    if t["dtype"] not in ("float32", "float64"):
        raise ValueError("training.dtype must be float32 or float64")
    if t["scheduler"] not in ("cosine", "plateau", "constant"):
        raise ValueError("training.scheduler must be cosine, plateau or constant")
    if "input_noise" in h["data"] and not (float(h["data"]["input_noise"]) >= 0
                                            and 0 <= float(h["data"]["noisy_fraction"]) <= 1):
        raise ValueError("data.input_noise must be >= 0 (nm) and data.noisy_fraction in [0, 1]")
    positive = [("training", key) for key in ("batch_size", "max_steps", "validate_every", "checkpoint_every")]
    positive += [("data", "frame_interval")] if "frame_interval" in h["data"] else []
    for section, key in positive:
        if int(h[section][key]) < 1:
            raise ValueError(f"{section}.{key} must be a positive integer")
    if not float(t["learning_rate"]) > 0:
        raise ValueError("training.learning_rate must be positive")
    for key, value in h["loss"].items():
        if float(value) < 0:
            raise ValueError(f"loss.{key} must be non-negative")
    if "rollout_strides" in h["loss"] and (int(h["loss"]["rollout_strides"]) != float(h["loss"]["rollout_strides"])
                                           or int(h["loss"]["rollout_strides"]) < 2):
        raise ValueError("loss.rollout_strides must be an integer >= 2")
    from openmm_flashmd.model.pet import PETHypers

    PETHypers.from_dict(h["model"])  # raises ValueError on bad architecture values
