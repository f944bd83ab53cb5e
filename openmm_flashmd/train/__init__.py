"""Training, export and evaluation of PET stride models and PET energy models (MLIPs).

The shared optimisation engine is :mod:`openmm_flashmd.train.engine`; the tasks are
:mod:`openmm_flashmd.train.trainer` (stride models, ``train``) and
:mod:`openmm_flashmd.train.mlip` (energy models, ``train_mlip``).
"""

from openmm_flashmd.train.engine import TrainResult
from openmm_flashmd.train.evaluate import ModelDataMismatch, evaluate, format_table
from openmm_flashmd.train.evaluate_mlip import evaluate_mlip, format_mlip_table
from openmm_flashmd.train.export import (average_models, export_checkpoint, export_energy_model, export_model,
                                         model_from_checkpoint, model_from_file)
from openmm_flashmd.train.hypers import default_hypers, load_hypers
from openmm_flashmd.train.mlip import train_mlip
from openmm_flashmd.train.trainer import train

__all__ = [
    "ModelDataMismatch",
    "TrainResult",
    "average_models",
    "default_hypers",
    "evaluate",
    "evaluate_mlip",
    "export_checkpoint",
    "export_energy_model",
    "export_model",
    "format_mlip_table",
    "format_table",
    "load_hypers",
    "model_from_checkpoint",
    "model_from_file",
    "train",
    "train_mlip",
]
