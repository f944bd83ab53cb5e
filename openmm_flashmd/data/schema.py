"""The HDF5 layout of FlashMD reference trajectories (format ``openmm-flashmd-trajectories``).

A file holds ``S`` independent NVE segments of ``F`` frames each, for one system of ``N``
particles, recorded every ``record_interval`` ps with velocity Verlet (positions and
velocities at the same instant). Frame 0 of a segment is its initial condition.

Root attributes
---------------
=====================  ======  ==============================================================
name                   units   meaning
=====================  ======  ==============================================================
format                 --      ``"openmm-flashmd-trajectories"``
format_version         --      integer, :data:`FORMAT_VERSION`
timestep               ps      velocity-Verlet step of the reference dynamics
record_interval        ps      time between stored frames
frames_per_segment     --      ``F``
n_segments             --      ``S`` (segments planned; see ``segment_complete``)
temperature            K       temperature of the thermalisation/decorrelation thermostat
friction               1/ps    Langevin friction used between segments
thermalize             ps      Langevin time before the first segment
decorrelate            ps      Langevin time between segments
seed                   --      master random seed
periodic               --      whether the System uses periodic boundary conditions
constraints_active     --      whether the System has constraints (enforced in the data)
description            --      human-readable description of the potential
system_name            --      built-in name, or ``"custom"``
platform               --      OpenMM platform used
package_versions       --      JSON object {package: version}
created                --      ISO time of creation
=====================  ======  ==============================================================

Datasets
--------
=====================  ===============  ===========  ==============================================
name                   shape            units        meaning
=====================  ===============  ===========  ==============================================
positions              [S, F, N, 3]     nm           not wrapped into the cell (continuous in time)
velocities             [S, F, N, 3]     nm/ps        at the same instants as ``positions``
forces                 [S, F, N, 3]     kJ/mol/nm
potential_energy       [S, F]           kJ/mol
box                    [S, F, 3, 3]     nm           one cell vector per row; zeros if not periodic
segment_complete       [S]              --           1 once a segment and its successor state exist
masses                 [N]              Da
atomic_numbers         [N]              --           0 where unknown (virtual sites, custom types)
constraints            [C, 3]           --, --, nm   (atom i, atom j, distance); C = 0 if none
topology_pdb           scalar string    --           PDB text of the topology and first structure
system_xml             scalar string    --           ``XmlSerializer`` text of the System
resume_state           scalar string    --           OpenMM State XML that starts the next segment;
                                                     attribute ``segment``: the segment it starts
=====================  ===============  ===========  ==============================================

Only segments with ``segment_complete == 1`` hold valid data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Union

import h5py

FORMAT_NAME = "openmm-flashmd-trajectories"
FORMAT_VERSION = 1

#: Datasets of shape [S, F, ...] (one row per segment).
PER_FRAME_DATASETS = ("positions", "velocities", "forces", "potential_energy", "box")
#: Datasets every valid file contains.
REQUIRED_DATASETS = PER_FRAME_DATASETS + (
    "segment_complete", "masses", "atomic_numbers", "constraints", "topology_pdb", "system_xml",
)
REQUIRED_ATTRIBUTES = (
    "format", "format_version", "timestep", "record_interval", "frames_per_segment",
    "n_segments", "temperature", "periodic", "constraints_active", "description",
)


class TrajectoryFormatError(ValueError):
    """A file is not a valid (or not a supported) openmm-flashmd trajectory file."""


def open_trajectory_file(path: Union[str, Path], mode: str = "r") -> h5py.File:
    """Open ``path`` with h5py and check that it is an openmm-flashmd trajectory file.

    Raises :class:`FileNotFoundError` if it does not exist and :class:`TrajectoryFormatError`
    if it is not HDF5, is truncated/corrupt, belongs to another format, has an unsupported
    version or lacks required fields.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trajectory file {path} does not exist")
    try:
        handle = h5py.File(path, mode)
    except OSError as err:
        raise TrajectoryFormatError(f"{path} is not a readable HDF5 file (corrupt or truncated?): {err}") from None
    try:
        validate_file(handle, path)
    except BaseException:
        handle.close()
        raise
    return handle


def validate_file(handle: h5py.File, path: Union[str, Path] = "<file>") -> None:
    """Check format name, version and presence/shape of the required fields."""
    fmt = handle.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt != FORMAT_NAME:
        raise TrajectoryFormatError(
            f"{path} is not an openmm-flashmd trajectory file (format attribute {fmt!r}, "
            f"expected {FORMAT_NAME!r})"
        )
    version = int(handle.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise TrajectoryFormatError(
            f"{path} has format version {version}; this package reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED_ATTRIBUTES if k not in handle.attrs]
    missing += [k for k in REQUIRED_DATASETS if k not in handle]
    if missing:
        raise TrajectoryFormatError(f"{path} lacks required fields: {missing}")
    try:
        n_seg, n_frames = int(handle.attrs["n_segments"]), int(handle.attrs["frames_per_segment"])
        n_atoms = handle["masses"].shape[0]
        for name in PER_FRAME_DATASETS:
            shape = handle[name].shape
            if shape[:2] != (n_seg, n_frames):
                raise TrajectoryFormatError(f"{path}: dataset {name} has shape {shape}, expected ({n_seg}, {n_frames}, ...)")
        for name in ("positions", "velocities", "forces"):
            if handle[name].shape[2:] != (n_atoms, 3):
                raise TrajectoryFormatError(f"{path}: dataset {name} has shape {handle[name].shape}")
        if handle["segment_complete"].shape != (n_seg,):
            raise TrajectoryFormatError(f"{path}: segment_complete has shape {handle['segment_complete'].shape}")
    except (KeyError, OSError) as err:
        raise TrajectoryFormatError(f"{path} is damaged: {err}") from None


def _string_dataset(handle: h5py.File, name: str) -> h5py.Dataset:
    """The dataset ``name``, or its replacement ``name.next`` when a replacement was cut short
    between removing the old one and renaming the new one (see :func:`replace_string`)."""
    if name not in handle and f"{name}.next" in handle:
        return handle[f"{name}.next"]
    return handle[name]


def read_string(handle: h5py.File, name: str) -> str:
    """Read a scalar string dataset as ``str``."""
    value = _string_dataset(handle, name)[()]
    return value.decode() if isinstance(value, bytes) else str(value)


def string_attribute(handle: h5py.File, name: str, key: str) -> Any:
    """Attribute ``key`` of the scalar string dataset ``name`` (None when it has none)."""
    value = _string_dataset(handle, name).attrs.get(key)
    return value.item() if hasattr(value, "item") else value


def replace_string(handle: h5py.File, name: str, text: str, **attributes: Any) -> None:
    """Replace the scalar string dataset ``name`` (e.g. ``resume_state``) by ``text`` (with
    ``attributes``), safely against a kill at any moment: the new text is written and flushed
    as ``name.next`` first, then the old dataset is unlinked and the new one renamed; a reader
    finds one of the two complete datasets whenever it stops."""
    if name not in handle and f"{name}.next" in handle:  # finish a replacement cut short earlier
        handle.move(f"{name}.next", name)
    if f"{name}.next" in handle:
        del handle[f"{name}.next"]
    dataset = handle.create_dataset(f"{name}.next", data=text, dtype=h5py.string_dtype())
    for key, value in attributes.items():
        dataset.attrs[key] = value
    handle.flush()
    del handle[name]
    handle.move(f"{name}.next", name)
    handle.flush()


def read_attrs(handle: h5py.File) -> Dict[str, Any]:
    """Root attributes as plain Python values (``package_versions`` parsed from JSON)."""
    out: Dict[str, Any] = {}
    for key, value in handle.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif hasattr(value, "item"):
            value = value.item()
        out[key] = value
    if isinstance(out.get("package_versions"), str):
        try:
            out["package_versions"] = json.loads(out["package_versions"])
        except json.JSONDecodeError:
            pass
    return out


def package_versions() -> Dict[str, str]:
    """Versions of the packages that shape the data and models."""
    import importlib.metadata as md

    versions = {}
    for name in ("openmm-flashmd", "openmm", "openmmtorch", "torch", "numpy", "h5py"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions
