"""The output folder of a long run: locked, written atomically, resumable to the byte.

* :class:`OutputLock` holds an exclusive ``flock`` on ``<folder>/.lock`` for the life of a
  run, so a second process on the same folder gets a clear refusal (the kernel drops the
  lock when the process dies, even by SIGKILL, so a stale lock never blocks a resume).
* :func:`atomic_write` writes a temporary file, fsyncs it and renames it over the target:
  a reader sees the old file or the new one, never half of one.
* :class:`RecordedCheckpointReporter` writes ``checkpoint.chk`` atomically and then
  ``checkpoint.json``: the step, the checkpoint's SHA-256 and the byte size of each file
  written alongside it (trajectory, log). :func:`restore_checkpoint` loads a checkpoint only
  if it matches its record, and :func:`truncate_to_record` cuts those files back to the
  sizes they had at the checkpoint (a DCD's frame count is rewritten in its header), so a
  resumed run appends to exactly what the checkpoint saw: no lost, repeated or torn frames.

OpenMM is imported only where a Simulation is involved, so training (which locks its folder
too) runs where only torch is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union

PathLike = Union[str, os.PathLike]


class RunFilesError(RuntimeError):
    """An output folder that cannot be used as asked (locked, corrupt checkpoint, missing data)."""


def atomic_write(path: PathLike, data: Union[bytes, str]) -> None:
    """Replace ``path`` with ``data`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class OutputLock:
    """Exclusive lock on an output folder (``<folder>/<name>``, default ``.lock``), as a context manager.

    Raises :class:`RunFilesError` naming the holder's process id when another process holds it.
    """

    def __init__(self, folder: PathLike, name: str = ".lock"):
        self.path = Path(folder) / name
        self._handle = None

    def __enter__(self) -> "OutputLock":
        import fcntl

        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFilesError(f"another process (pid {holder}) is writing to {self.path.parent} (lock "
                                f"{self.path.name}); wait for it to finish or use another output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the flock
            self._handle = None


def record_path(checkpoint: PathLike) -> Path:
    """Where the record of ``checkpoint`` goes: the same path with ``.json``."""
    return Path(checkpoint).with_suffix(".json")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: byte offset of the frame count (int32) in a DCD header, which OpenMM's DCDFile rewrites per frame
DCD_FRAME_COUNT_OFFSET = 8


def _dcd_frames(path: Path) -> int:
    with open(path, "rb") as handle:
        handle.seek(DCD_FRAME_COUNT_OFFSET)
        return struct.unpack("<i", handle.read(4))[0]


class RecordedCheckpointReporter:
    """A ``Simulation`` reporter that checkpoints every ``interval`` steps with a record.

    Add it after the reporters whose files it records (OpenMM calls reporters of the same
    step in order), so the sizes it records include that step's frame and row.

    Parameters
    ----------
    checkpoint : path of the checkpoint (``.chk``); the record is the same path with ``.json``
    interval : steps between checkpoints
    files : name -> path of files written alongside (e.g. trajectory, log), whose sizes are recorded
    """

    def __init__(self, checkpoint: PathLike, interval: int, files: Mapping[str, PathLike]):
        self.checkpoint = Path(checkpoint)
        self.record = record_path(self.checkpoint)
        self._interval = int(interval)
        self._files = {name: Path(p) for name, p in files.items()}

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": None, "include": []}

    def report(self, simulation, state) -> None:
        self.save(simulation)

    def save(self, simulation) -> Dict:
        """Write the checkpoint and its record now; returns the record."""
        from openmm import unit

        data = simulation.context.createCheckpoint()
        atomic_write(self.checkpoint, data)
        files = {name: {"bytes": path.stat().st_size if path.exists() else 0} for name, path in self._files.items()}
        for name, path in self._files.items():
            if path.suffix == ".dcd" and path.exists() and files[name]["bytes"] > 0:
                files[name]["frames"] = _dcd_frames(path)
        record = {"step": simulation.currentStep, "time_ps": simulation.context.getTime().value_in_unit(
            unit.picosecond), "sha256": _sha256(data), "bytes": len(data), "files": files}
        atomic_write(self.record, json.dumps(record, indent=1) + "\n")
        return record


def _checked_checkpoint(checkpoint: Path) -> Tuple[Dict, bytes]:
    """The record of ``checkpoint`` (see :class:`RecordedCheckpointReporter`) and the checkpoint's
    bytes, once they are checked against each other."""
    record_file = record_path(checkpoint)
    if not checkpoint.exists():
        raise RunFilesError(f"cannot resume: {checkpoint} does not exist (the run stopped before its first "
                            "checkpoint); start again with --overwrite")
    try:
        record = json.loads(record_file.read_text())
        expected = record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RunFilesError(f"cannot resume: {record_file} is missing or unreadable, so {checkpoint.name} cannot be "
                            "checked; start again with --overwrite") from None
    data = checkpoint.read_bytes()
    if _sha256(data) != expected:
        raise RunFilesError(f"cannot resume: {checkpoint} does not match its record in {record_file.name} (truncated "
                            "or corrupt); start again with --overwrite")
    return record, data


def restore_checkpoint(simulation, checkpoint: PathLike) -> Dict:
    """Load ``checkpoint`` into ``simulation`` after checking it against its record; returns the record."""
    import openmm

    record, data = _checked_checkpoint(Path(checkpoint))
    try:
        simulation.context.loadCheckpoint(data)
    except openmm.OpenMMException as err:
        raise RunFilesError(f"cannot resume: {checkpoint} does not restore into this run's System and integrator "
                            f"({str(err).strip()})") from None
    simulation.currentStep = int(record["step"])
    return record


def truncate_to_record(record: Mapping, files: Mapping[str, PathLike]) -> None:
    """Cut each file back to its size in ``record`` (data written after the checkpoint goes).

    A file shorter than recorded lost data the checkpoint saw: :class:`RunFilesError`.
    """
    for name, path in files.items():
        path = Path(path)
        entry: Optional[Dict] = record.get("files", {}).get(name)
        if entry is None:
            continue
        size = int(entry["bytes"])
        actual = path.stat().st_size if path.exists() else 0
        if actual < size:
            raise RunFilesError(f"cannot resume: {path} has {actual} bytes but had {size} at the checkpoint (data "
                                "were lost); start again with --overwrite")
        if actual > size:
            with open(path, "r+b") as handle:
                handle.truncate(size)
        if "frames" in entry:  # the DCD header counts frames; make it match the kept ones
            with open(path, "r+b") as handle:
                handle.seek(DCD_FRAME_COUNT_OFFSET)
                handle.write(struct.pack("<i", int(entry["frames"])))
