"""On-policy reference data (dataset aggregation): reference MD from the states a stride model visits.

A stride model trained on reference trajectories only sees states of the data's manifold;
in a simulation its own small errors take it off that manifold, where nothing taught it
what to do, and errors compound. :func:`onpolicy_data` runs the model (FlashMD NVT, the
splitting "O F E O") for a short burst from frames of the reference data, and records
reference MD from each state it ends in: an NVE velocity-Verlet segment written by
:func:`openmm_flashmd.data.generate.generate` with the data file's own settings (timestep,
record interval, segment length), into a new trajectory file that trains together with
the original (``openmm-flashmd train ORIGINAL.h5 ONPOLICY.h5 ...``).
"""

from __future__ import annotations

import openmm_flashmd._plugins  # noqa: F401  (torch before openmm; see NOTES)

import copy
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np
import openmm
from openmm import unit
from tqdm.auto import tqdm

from openmm_flashmd.data import schema
from openmm_flashmd.data.dataset import load_trajectories
from openmm_flashmd.data.generate import generate
from openmm_flashmd.data.guess import data_system
from openmm_flashmd.model.protocol import ModelLike

PathLike = Union[str, os.PathLike]


def onpolicy_data(
    model: ModelLike,
    data: PathLike,
    output: PathLike,
    n_segments: int,
    burst_strides: Tuple[int, int] = (10, 60),
    seed: int = 0,
    segment_length: Optional[float] = None,
    platform: str = "CPU",
    progress: bool = True,
) -> Path:
    """Write ``n_segments`` reference segments started from states ``model`` visits.

    Each segment: a random frame of ``data`` (a trajectory file), ``model`` run for a
    uniformly drawn number of strides in ``burst_strides`` (NVT at the data's temperature,
    Langevin 1/ps with the energy filter), then reference MD from where it ended (the data
    file's System, timestep, record interval and segment length; no Langevin in between).
    A burst that fails (NaN, a particle flying off) is redrawn. ``segment_length`` (ps)
    shortens the segments (default: the data's; a file with other lengths cannot be merged
    with the data, but keeps the pairs close to the visited states). Returns ``output``.
    """
    from openmm_flashmd.integrator.flashmd import FlashMDError, FlashMDIntegrator

    data = load_trajectories(data)
    attrs = data.attrs
    system = data_system(data)
    rng = np.random.default_rng(int(seed))
    common = dict(timestep=float(attrs["timestep"]), record_interval=float(attrs["record_interval"]),
                  segment_length=float(segment_length or attrs["segment_length"]), temperature=data.temperature,
                  friction=float(attrs.get("friction", 1.0)), decorrelate=0.0, thermalize=0.0, seed=int(seed),
                  platform=platform, progress=False)
    output = Path(output)
    generate(output, system, data.positions[0, 0], n_segments=int(n_segments), minimize=False,
             description=f"on-policy reference segments of {data.path.name}: " + str(attrs.get("description", "")),
             max_new_segments=0, **common)

    flashmd_system = copy.deepcopy(system)
    integrator = FlashMDIntegrator(flashmd_system, model, temperature=data.temperature * unit.kelvin,
                                   random_seed=int(seed) + 1, fallback=False)  # the model's own states only
    context = openmm.Context(flashmd_system, integrator, openmm.Platform.getPlatformByName(platform))
    for segment in tqdm(range(int(n_segments)), desc=f"on-policy {output.name}", disable=not progress,
                        unit="segment"):
        while True:
            s, f = rng.integers(data.n_segments), rng.integers(data.frames_per_segment)
            if data.periodic:
                context.setPeriodicBoxVectors(*data.box[s, f])
            context.setPositions(data.positions[s, f])
            context.setVelocities(data.velocities[s, f])
            try:
                integrator.step(int(rng.integers(burst_strides[0], burst_strides[1] + 1)))
            except FlashMDError:
                continue
            state = context.getState(getPositions=True, getVelocities=True, enforcePeriodicBox=False)
            if np.all(np.isfinite(state.getPositions(asNumpy=True)._value)):
                break
        with schema.open_trajectory_file(output, "r+") as handle:
            schema.replace_string(handle, "resume_state", openmm.XmlSerializer.serialize(state))
        generate(output, resume=True, max_new_segments=1, platform=platform, progress=False)
    return output
