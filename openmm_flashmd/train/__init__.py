"""Training, export and evaluation of PET stride models."""

from openmm_flashmd.train.evaluate import ModelDataMismatch, evaluate, format_table
from openmm_flashmd.train.export import export_checkpoint, export_model, model_from_checkpoint
from openmm_flashmd.train.hypers import default_hypers, load_hypers
from openmm_flashmd.train.trainer import TrainResult, train

__all__ = [
    "ModelDataMismatch",
    "TrainResult",
    "default_hypers",
    "evaluate",
    "export_checkpoint",
    "export_model",
    "format_table",
    "load_hypers",
    "model_from_checkpoint",
    "train",
]
