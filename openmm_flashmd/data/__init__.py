"""Reference data: generation (:mod:`.generate`), file layout (:mod:`.schema`), training
pairs (:mod:`.dataset`), inputs computed with OpenMM (:mod:`.guess`: Verlet guesses, noisy
copies) and on-policy reference segments (:mod:`.onpolicy`)."""

from openmm_flashmd.data.dataset import (
    DataError,
    ForceFrames,
    StridePairs,
    TrajectoryData,
    load_trajectories,
    merge_trajectories,
    split_segments,
    stride_frames,
)
from openmm_flashmd.data.generate import SimulationError, generate
from openmm_flashmd.data.schema import FORMAT_NAME, FORMAT_VERSION, TrajectoryFormatError

__all__ = [
    "DataError",
    "ForceFrames",
    "SimulationError",
    "StridePairs",
    "TrajectoryData",
    "TrajectoryFormatError",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "generate",
    "load_trajectories",
    "merge_trajectories",
    "split_segments",
    "stride_frames",
]
