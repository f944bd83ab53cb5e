"""The task-independent training engine shared by every trainer of this package.

A *task* (:class:`TrainingTask`) says what is learned: it owns the model, the data, the
batches, the loss and the validation metrics, and knows how to export the result.
The engine (:func:`run_training`) owns everything else, identically for all tasks:

* process set-up (:func:`setup_process`): device choice, ``torchrun`` / DDP
  (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``; NCCL on CUDA, gloo on CPU; only rank 0
  writes files);
* output directory rules (:func:`check_output_dir`): refuse a non-empty directory
  unless ``overwrite`` (which removes only the files a run writes) or ``resume``;
* hyper-parameters on resume (:func:`resume_hypers`): default to the checkpoint's,
  refuse changes to the sections that define the model, the loss and the data;
* the optimisation loop: AdamW, linear warm-up then cosine / plateau / constant
  learning rate, gradient clipping, epochs over a seeded permutation, validation every
  ``validate_every`` steps, best-weights tracking, early stopping;
* ``log.csv`` (engine columns plus the task's), ``loss_curve.png``, a tqdm bar;
* ``curves.json``: per validation, step, wall time (s), torch threads and the task's
  validation summary (stride models: per-element held-out Δq and v' RMSE and kinetic-energy
  ratio), plotted in ``curves.png`` against step and wall time;
* ``checkpoint.pt``: model, optimiser, schedule state, RNG states, best weights, plus the
  task's own fields; written atomically; resuming reproduces an uninterrupted run;
* at the end: best weights restored, one last validation, export by the task.

The hyper-parameter sections the engine reads are ``training`` (see
``default_hypers.yaml``) and, for resume checks, ``model``, ``loss`` and ``data``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml

from openmm_flashmd.data.dataset import DataError, TrajectoryData, merge_trajectories, split_segments
from openmm_flashmd.messages import error_line
from openmm_flashmd.model.neighbors import cell_heights
from openmm_flashmd.performance import tune_malloc
from openmm_flashmd.run_files import OutputLock
from openmm_flashmd.train.hypers import load_hypers

__all__ = [
    "ProcessInfo",
    "TrainResult",
    "TrainingTask",
    "check_output_dir",
    "clear_outputs",
    "load_training_data",
    "lr_factor",
    "resume_hypers",
    "run_training",
    "setup_process",
]

#: Files the engine writes into the output directory (``overwrite`` removes only these).
ENGINE_FILES = ("hypers.yaml", "split.json", "log.csv", "loss_curve.png", "checkpoint.pt", "checkpoint.pt.tmp",
                "model.pt", "validation.json", "curves.json", "curves.png")

#: Per-element quantities of a validation summary that ``curves.png`` shows, with their axis labels.
CURVE_QUANTITIES = (("dq_rmse", "held-out Δq RMSE (nm)"), ("v_rmse", "held-out v' RMSE (nm/ps)"),
                    ("kinetic_energy_ratio", "KE ratio (model / reference)"))

#: Sections a resumed run may not change (the ``training`` section may change).
FROZEN_SECTIONS = ("model", "loss", "data")


@dataclass
class TrainResult:
    """What a training run produced. Losses are dimensionless (1 ~ trivial baseline)."""

    output_dir: Path
    model_path: Optional[Path]
    steps: int
    best_step: int
    best_validation_loss: float
    stopped_early: bool
    validation: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessInfo:
    """This process in a (possibly distributed) run."""

    device: torch.device
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_process(device: str = "auto") -> ProcessInfo:
    """Read the ``torchrun`` environment, start the process group if needed and pick the
    device: ``"auto"`` is ``cuda:LOCAL_RANK`` when CUDA is available, else CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if device == "auto":
        dev = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return ProcessInfo(device=dev, rank=rank, local_rank=local_rank, world=world)


def check_output_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Refuse unusable output directories (no side effects); True when resuming from a checkpoint."""
    ckpt = out / "checkpoint.pt"
    if resume and overwrite:
        raise ValueError("pass either resume=True or overwrite=True, not both")
    existing = out.exists() and any(p.name != ".lock" for p in out.iterdir())
    if resume:
        if ckpt.exists():
            return True
        if existing:
            raise FileNotFoundError(f"cannot resume: {out} has no checkpoint.pt (the run stopped before its first "
                                    "checkpoint); start again with --overwrite")
        return False
    if existing and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True or resume=True")
    return False


def clear_outputs(out: Path, names: Sequence[str] = ENGINE_FILES) -> None:
    """Remove the files an earlier run wrote (and nothing else)."""
    for name in names:
        if (out / name).exists():
            (out / name).unlink()


def resume_hypers(
    out: Path,
    resuming: bool,
    hypers: Any,
    overrides: Any,
    task_name: str,
) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """Hyper-parameters of this run (:func:`~openmm_flashmd.train.hypers.load_hypers` for
    ``task_name``) and the checkpoint (None when not resuming).

    When resuming, ``hypers`` default to the checkpoint's; the sections in
    :data:`FROZEN_SECTIONS` and ``training.dtype`` must not change; the checkpoint must
    come from the same kind of task.
    """
    if not resuming:
        return load_hypers(hypers, overrides, task=task_name), None
    try:
        ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"cannot resume: {out / 'checkpoint.pt'} does not exist (the run stopped before its "
                                "first checkpoint); start again with --overwrite") from None
    except Exception as err:  # noqa: BLE001 (torch raises RuntimeError, pickle errors, EOFError...)
        raise ValueError(f"cannot resume: {out / 'checkpoint.pt'} is unreadable (truncated or corrupt: "
                         f"{error_line(err)}); start again with --overwrite") from None
    if not isinstance(ckpt, dict) or "hypers" not in ckpt:
        raise ValueError(f"cannot resume: {out / 'checkpoint.pt'} is not a training checkpoint; start again with "
                         "--overwrite")
    found = ckpt.get("task", "stride")
    if found != task_name:
        raise ValueError(f"cannot resume: {out / 'checkpoint.pt'} is from a '{found}' run, not '{task_name}'")
    h = load_hypers(ckpt["hypers"] if hypers is None else hypers, overrides, task=task_name)
    # the checkpoint's hypers over today's defaults: keys added since it was written take their defaults
    saved = load_hypers(ckpt["hypers"], None, task=task_name)
    for section in FROZEN_SECTIONS:
        if h[section] != saved[section]:
            raise ValueError(f"cannot resume with different '{section}' hyper-parameters "
                             f"({h[section]} vs checkpoint {saved[section]})")
    if h["training"]["dtype"] != ckpt["hypers"]["training"]["dtype"]:
        raise ValueError("cannot resume with a different training.dtype")
    return h, ckpt


def load_training_data(
    data: Union[str, os.PathLike, TrajectoryData, Sequence[Union[str, os.PathLike, TrajectoryData]]],
    h: Mapping[str, Any],
    ckpt: Optional[Mapping[str, Any]],
) -> Tuple[List[Any], TrajectoryData, np.ndarray, np.ndarray]:
    """Load (and merge) the trajectory file(s), check them against the hypers and the
    checkpoint, and split segments into training and validation sets.

    Returns ``(paths, data, train_segments, validation_segments)``; segment indices index
    ``data``'s segments (the checkpoint's split when resuming).
    """
    paths = list(data) if isinstance(data, (list, tuple)) else [data]
    tdata = merge_trajectories(paths)
    if ckpt is not None and ckpt["dataset_sha256"] != tdata.sha256:
        raise DataError("cannot resume: the training data differ from the checkpoint's (SHA-256 mismatch)")
    if np.any(tdata.atomic_numbers < 1):
        raise DataError("the data contain particles without an element (atomic number 0); PET needs elements")
    tdata.element_masses()  # one mass per element
    cutoff = float(h["model"]["cutoff"])
    if tdata.periodic:
        height = min(float(cell_heights(torch.from_numpy(b)).min()) for b in tdata.box[:, 0])
        if cutoff >= 0.5 * height:
            raise ValueError(f"model.cutoff {cutoff} nm must be below half the smallest cell height "
                             f"({0.5 * height:.4f} nm) of the data")
    if ckpt is not None:
        train_idx, val_idx = np.array(ckpt["split"]["train"]), np.array(ckpt["split"]["validation"])
    else:
        hd = h["data"]
        train_idx, val_idx = split_segments(tdata.n_segments, float(hd["validation_fraction"]), int(hd["split_seed"]))
    return paths, tdata, train_idx, val_idx


def lr_factor(step: int, t: Mapping[str, Any]) -> float:
    """Learning-rate multiplier at ``step`` (warm-up, then the ``training.scheduler``)."""
    warm = int(t["warmup_steps"])
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if t["scheduler"] == "cosine":
        span = max(1, int(t["max_steps"]) - warm)
        progress = min(1.0, (step - warm) / span)
        floor = float(t["min_lr_ratio"])
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _plot(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path) as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(steps, [float(r["train_loss"]) for r in rows], label="train")
    ax.semilogy(steps, [float(r["val_loss"]) for r in rows], label="validation")
    ax.axhline(1.0, color="grey", lw=0.8, ls="--", label="trivial baseline (~1)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (normalised)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def _write_curves(curves: List[Dict[str, Any]], path: Path) -> None:
    """Write the learning curves atomically and plot those with per-element summaries."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(curves, indent=1))
    os.replace(tmp, path)
    rows = [c for c in curves if isinstance(c.get("summary"), dict) and "per_element" in c["summary"]]
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    elements = list(rows[-1]["summary"]["per_element"].values())
    fig, axes = plt.subplots(2, len(CURVE_QUANTITIES), figsize=(4.2 * len(CURVE_QUANTITIES), 7.0))
    abscissae = (("step", [c["step"] for c in rows]),
                 (f"wall time (s, {rows[-1]['threads']} torch threads)", [c["wall_s"] for c in rows]))
    for axes_row, (xlabel, x) in zip(axes, abscissae):
        for ax, (key, label) in zip(axes_row, CURVE_QUANTITIES):
            for k, element in enumerate(rows[-1]["summary"]["per_element"]):
                values = [c["summary"]["per_element"].get(element, {}).get(key, math.nan) for c in rows]
                ax.plot(x, values, label=elements[k].get("symbol", element))
            if key == "kinetic_energy_ratio":
                ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            else:
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=100)
    plt.close(fig)


class TrainingTask:
    """What is learned, for :func:`run_training`. Subclasses set the attributes and
    implement the methods below.

    Attributes
    ----------
    name : task name stored in checkpoints (``"stride"``, ``"mlip"``)
    model : the ``torch.nn.Module`` whose parameters are optimised (on the device)
    generator : ``torch.Generator`` of the data augmentation (saved in checkpoints)
    train_size : number of training items (the engine permutes ``range(train_size)``)
    has_validation : False when there is no validation set (then the last weights are
        the "best")
    train_parts : loss parts logged as ``train_<part>`` (NaN when a step lacks one)
    val_fields : validation metrics logged after ``val_loss``
    """

    name: str = "task"
    model: torch.nn.Module
    generator: torch.Generator
    train_size: int = 0
    has_validation: bool = True
    train_parts: Sequence[str] = ()
    val_fields: Sequence[str] = ()

    def seed(self, seed: int, rank: int) -> None:
        """Seed torch and the augmentation generator of process ``rank``."""
        torch.manual_seed(seed + rank)
        self.generator = torch.Generator().manual_seed(seed * 1000 + rank)

    def set_datasets(self, train_ds: Any, val_ds: Any, max_validation: int, empty_message: str) -> None:
        """Install the training and (optional) validation datasets and pick at most
        ``max_validation`` validation items (0: all), the same ones every validation."""
        from openmm_flashmd.data.dataset import DataError, subsample

        if len(train_ds) == 0:
            raise DataError(empty_message)
        self.train_ds, self.val_ds = train_ds, val_ds
        self.train_size = len(train_ds)
        self.has_validation = val_ds is not None
        self.val_order = subsample(len(val_ds), max_validation) if val_ds is not None else np.array([], dtype=np.int64)

    def file_ids(self, idx: np.ndarray) -> list:
        """Segment indices in the file of the loaded segments ``idx``."""
        return [int(self.tdata.segment_ids[i]) for i in idx]

    def _to_dev(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """``batch`` with its tensors moved to the task's device."""
        return {key: (v.to(self.device) if torch.is_tensor(v) else v) for key, v in batch.items()}

    def train_batch(self, indices: np.ndarray) -> Dict[str, Any]:
        """The training items ``indices`` of ``self.train_ds``, on the task's device."""
        return self._to_dev(self.train_ds.get_batch(indices))

    def forward_module(self) -> torch.nn.Module:
        """The module the engine calls (and wraps in DDP): ``forward(batch) -> outputs``.
        It must hold ``self.model`` so that DDP sees its parameters."""
        raise NotImplementedError

    def loss(self, outputs: Any, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """``{"loss": total, part: value, ...}`` (dimensionless, differentiable)."""
        raise NotImplementedError

    def validate(self) -> Dict[str, Any]:
        """``{"val_loss": float, <val_fields>: float, "summary": {...} (optional)}``;
        the model is in eval mode and gradients are enabled (forces need them)."""
        raise NotImplementedError

    def checkpoint_fields(self) -> Dict[str, Any]:
        """Task fields stored in ``checkpoint.pt``: the model spec, the data scales, the
        dataset hash and the segment split (tasks set ``spec``, ``scales``, ``tdata``,
        ``train_idx``, ``val_idx``)."""
        return {"model_spec": self.spec, "scales": self.scales, "dataset_sha256": self.tdata.sha256,
                "split": {"train": self.train_idx.tolist(), "validation": self.val_idx.tolist()}}

    def split_info(self) -> Dict[str, Any]:
        """Content of ``split.json``: training and validation segments (file indices) and the data hash."""
        return {"training_segments": self.file_ids(self.train_idx), "validation_segments": self.file_ids(self.val_idx),
                "dataset_sha256": self.tdata.sha256}

    def final_validation(self, val: Dict[str, Any], best_step: int) -> Dict[str, Any]:
        """The ``validation`` metadata of the exported model (also ``validation.json``)."""
        return {"loss": val["val_loss"], "step": best_step}

    def export(self, path: Path, validation: Dict[str, Any]) -> Path:
        """Write the exported TorchScript model (best weights are loaded) to ``path``."""
        raise NotImplementedError


def run_training(task: TrainingTask, h: Dict[str, Any], out: Path, proc: ProcessInfo, **options: Any) -> TrainResult:
    """Optimise ``task.model`` with the ``training`` hypers of ``h``, writing into ``out``
    (see the module docstring); resumes from ``ckpt`` when given. ``stop_after``: stop at
    that step (checkpointed, no export; continue with a resumed run), for training that
    spans several sessions; the schedule still runs to ``training.max_steps``. The main
    process holds ``out``'s lock (:class:`~openmm_flashmd.run_files.OutputLock`) meanwhile,
    so a second training on the same folder is refused. Every process keeps glibc's malloc
    from mapping fresh pages per large tensor (:func:`openmm_flashmd.performance.tune_malloc`)."""
    tune_malloc()
    if not proc.is_main:
        return _optimise(task, h, out, proc, **options)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out):
        return _optimise(task, h, out, proc, **options)


def _optimise(
    task: TrainingTask,
    h: Dict[str, Any],
    out: Path,
    proc: ProcessInfo,
    ckpt: Optional[Dict[str, Any]] = None,
    overwrite: bool = False,
    progress: bool = True,
    export: bool = True,
    stop_after: Optional[int] = None,
) -> TrainResult:
    t = h["training"]
    model = task.model
    rank, world = proc.rank, proc.world
    net = task.forward_module()
    if proc.distributed:
        # some PET parameters (e.g. the last layer's edge outputs) do not reach the loss
        net = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[proc.device.index] if proc.device.type == "cuda" else None, find_unused_parameters=True)
    opt = torch.optim.AdamW(model.parameters(), lr=float(t["learning_rate"]),
                            weight_decay=float(t["weight_decay"]), betas=tuple(t["betas"]))
    state: Dict[str, Any] = {"step": 0, "epoch": 0, "cursor": 0, "best_val": math.inf, "best_step": -1, "bad": 0,
                             "plateau_scale": 1.0, "plateau_bad": 0, "stopped_early": False, "best_state": None,
                             "wall": 0.0, "acc": {"n": 0}}
    if ckpt is not None:
        model.load_state_dict(ckpt["model_state"])
        opt.load_state_dict(ckpt["optimizer_state"])
        state.update(ckpt["state"])
        state["best_state"] = ckpt["best_state"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        task.generator.set_state(ckpt["rng"]["generator"])

    log_fields = (["step", "epoch", "lr", "train_loss"] + [f"train_{p}" for p in task.train_parts] + ["val_loss"]
                  + list(task.val_fields) + ["best_val_loss", "wall_s"])

    def validate() -> Dict[str, Any]:
        model.eval()
        try:
            return task.validate()
        finally:
            model.train()

    saved_at = state["step"] if ckpt is not None else None  # step of the newest checkpoint on disk

    def save_checkpoint() -> None:
        nonlocal saved_at
        if rank != 0:
            return
        payload = {
            "format": "openmm-flashmd-checkpoint", "version": 1, "task": task.name, "hypers": h,
            "model_state": model.state_dict(), "optimizer_state": opt.state_dict(),
            "state": {key: v for key, v in state.items() if key != "best_state"},
            "best_state": state["best_state"],
            "rng": {"torch": torch.get_rng_state(), "generator": task.generator.get_state()},
        }
        payload.update(task.checkpoint_fields())
        tmp = out / "checkpoint.pt.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, out / "checkpoint.pt")
        saved_at = state["step"]

    log_path = out / "log.csv"
    curves_path = out / "curves.json"
    curves: List[Dict[str, Any]] = []
    if ckpt is not None and curves_path.exists():  # keep what the checkpoint had seen
        curves = [c for c in json.loads(curves_path.read_text()) if c["step"] <= state["step"]]
    if rank == 0:
        if overwrite and ckpt is None:
            clear_outputs(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "hypers.yaml").write_text(yaml.safe_dump(h, sort_keys=False))
        (out / "split.json").write_text(json.dumps(task.split_info(), indent=1))
        if ckpt is not None and log_path.exists():  # rows written after the checkpoint (a killed run) go
            with open(log_path, newline="") as f:
                rows = list(csv.reader(f))
            kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= state["step"]]
            other_columns = bool(rows) and rows[0] != log_fields  # a log of a version with other columns
            if other_columns:  # the same rows under today's header
                kept = [log_fields] + [[dict(zip(rows[0], r)).get(key, "nan") for key in log_fields] for r in kept[1:]]
            if other_columns or len(kept) != len(rows):
                with open(log_path, "w", newline="") as f:
                    csv.writer(f).writerows(kept)
        if not log_path.exists():
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(log_fields)

    from tqdm.auto import tqdm

    max_steps = int(t["max_steps"])
    bar = tqdm(total=max_steps, initial=state["step"], disable=not progress or rank != 0, unit="step",
               desc=f"train {task.name}")
    rng_epoch = lambda epoch: np.random.default_rng([int(t["seed"]), epoch])  # noqa: E731
    perm = rng_epoch(state["epoch"]).permutation(task.train_size)
    batch_size = int(t["batch_size"])
    patience = int(t["early_stopping_patience"])
    start_time = time.time() - state["wall"]
    model.train()
    try:
        start_step = state["step"]
        while (state["step"] < max_steps and not state["stopped_early"]
               and (stop_after is None or state["step"] < stop_after)):
            global_bs = batch_size * world
            if state["cursor"] + global_bs > len(perm):
                state["epoch"] += 1
                state["cursor"] = 0
                perm = rng_epoch(state["epoch"]).permutation(task.train_size)
            chunk = perm[state["cursor"]:state["cursor"] + global_bs]
            if len(chunk) < global_bs:  # fewer items than one global batch: take all
                chunk = perm
            mine = chunk[rank::world] if len(chunk) >= world else chunk
            state["cursor"] += global_bs
            lr = float(t["learning_rate"]) * lr_factor(state["step"], t) * state["plateau_scale"]
            for group in opt.param_groups:
                group["lr"] = lr
            batch = task.train_batch(mine)
            parts = task.loss(net(batch), batch)
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            if float(t["grad_clip"]) > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(t["grad_clip"]))
            opt.step()
            loss_value = float(parts["loss"].detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"training loss became {loss_value} at step {state['step']}; "
                                         "lower training.learning_rate or check the data")
            acc = state["acc"]
            acc["n"] += 1
            acc["loss"] = acc.get("loss", 0.0) + loss_value
            for key in task.train_parts:
                if key in parts:
                    acc[key] = acc.get(key, 0.0) + float(parts[key].detach())
            state["step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3g}", val=f"{state['best_val']:.3g}", refresh=False)

            last = state["step"] >= max_steps
            if state["step"] % int(t["validate_every"]) == 0 or last:
                val = validate()
                improved = val["val_loss"] < state["best_val"] or (not task.has_validation and last)
                if improved:
                    state["best_val"] = val["val_loss"]
                    state["best_step"] = state["step"]
                    state["best_state"] = {key: v.detach().cpu().clone() for key, v in model.state_dict().items()}
                    state["bad"] = 0
                    state["plateau_bad"] = 0
                else:
                    state["bad"] += 1
                    state["plateau_bad"] += 1
                    if t["scheduler"] == "plateau" and state["plateau_bad"] >= int(t["plateau_patience"]):
                        state["plateau_scale"] *= float(t["plateau_factor"])
                        state["plateau_bad"] = 0
                    if patience > 0 and state["bad"] >= patience:
                        state["stopped_early"] = True
                n = max(acc["n"], 1)
                row = {"step": state["step"], "epoch": state["epoch"], "lr": lr, "train_loss": acc.get("loss", 0.0) / n,
                       "best_val_loss": state["best_val"], "wall_s": time.time() - start_time}
                for part in task.train_parts:
                    row[f"train_{part}"] = acc[part] / n if part in acc else math.nan
                row.update({key: v for key, v in val.items() if key != "summary"})
                state["acc"] = {"n": 0}
                state["wall"] = time.time() - start_time
                if rank == 0:
                    with open(log_path, "a", newline="") as f:
                        csv.writer(f).writerow([row.get(key, math.nan) for key in log_fields])
                    _plot(log_path, out / "loss_curve.png")
                    curves.append({"step": state["step"], "wall_s": row["wall_s"], "threads": torch.get_num_threads(),
                                   "val_loss": val["val_loss"], "summary": val.get("summary")})
                    _write_curves(curves, curves_path)
            if (state["step"] % int(t["checkpoint_every"]) == 0 or last or state["stopped_early"]
                    or state["step"] == stop_after):
                state["wall"] = time.time() - start_time
                save_checkpoint()
    except KeyboardInterrupt:
        where = (f"the last checkpoint ({out / 'checkpoint.pt'}) is at step {saved_at}" if saved_at is not None
                 else "no checkpoint was written yet")
        raise KeyboardInterrupt(f"interrupted at step {state['step']} of {max_steps}; {where}: continue with the "
                                "same command and --resume") from None
    finally:
        bar.close()
    if state["step"] == start_step:  # nothing ran (resuming a finished run): the checkpoint is still written
        save_checkpoint()
    if state["step"] < max_steps and not state["stopped_early"]:  # stopped by stop_after: resume later
        return TrainResult(output_dir=out, model_path=None, steps=state["step"], best_step=state["best_step"],
                           best_validation_loss=state["best_val"], stopped_early=False, validation={})

    # ------------------------------------------------------------------ export
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    validation = task.final_validation(validate(), state["best_step"])
    model_path = None
    if export and rank == 0:
        model_path = task.export(out / "model.pt", validation)
        (out / "validation.json").write_text(json.dumps(validation, indent=2))
    if proc.distributed:
        torch.distributed.barrier()
    return TrainResult(output_dir=out, model_path=model_path, steps=state["step"], best_step=state["best_step"],
                       best_validation_loss=state["best_val"], stopped_early=state["stopped_early"],
                       validation=validation)
