"""Train a PET stride model on reference trajectories.

``train(data, output_dir, stride, ...)`` writes into ``output_dir``:

=====================  =================================================================
file                   content
=====================  =================================================================
``hypers.yaml``        the full hyper-parameters used
``split.json``         training / validation segment indices (file indices)
``log.csv``            one row per validation: step, epoch, lr, train and validation losses,
                       validation RMSE of dq (nm) and v' (nm/ps), wall time (s)
``loss_curve.png``     training and validation loss against step
``checkpoint.pt``      everything needed to resume (model, optimiser, schedule, RNG, best
                       weights, early-stopping state)
``model.pt``           the exported TorchScript stride model (best validation weights)
``validation.json``    per-element errors of ``model.pt`` on the validation segments
=====================  =================================================================

Loss (see ``default_hypers.yaml``): weighted, normalised MSE of the mass-scaled
targets ``y_q = dq sqrt(m)`` and ``y_p = v' sqrt(m)``, plus an optional energy-
conservation term ``((H(q', v') - H(q, v)) / (N kB T))^2`` when an ``energy_model``
(``energy_model(positions [N, 3] nm, box [3, 3] nm) -> potential energy, kJ/mol``;
differentiable with respect to positions) is given.

Multi-GPU: launch with ``torchrun --nproc_per_node=K`` (each process picks
``cuda:LOCAL_RANK``; gradients are averaged with DistributedDataParallel; only rank 0
writes files). The single-process path is the tested one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import yaml

from openmm_flashmd.data.dataset import (
    DataError, StridePairs, TrajectoryData, load_trajectories, split_segments, stride_frames,
)
from openmm_flashmd.train.evaluate import _summarise, stride_errors
from openmm_flashmd.train.hypers import load_hypers

__all__ = ["train", "TrainResult", "OUTPUT_FILES", "KB"]

KB = 0.008314462618  # kJ/mol/K

OUTPUT_FILES = ("hypers.yaml", "split.json", "log.csv", "loss_curve.png", "checkpoint.pt", "model.pt",
                "validation.json", "checkpoint.pt.tmp")

LOG_FIELDS = ["step", "epoch", "lr", "train_loss", "train_loss_q", "train_loss_p", "train_loss_e",
              "val_loss", "val_loss_q", "val_loss_p", "val_dq_rmse", "val_v_rmse", "best_val_loss", "wall_s"]


@dataclass
class TrainResult:
    """What :func:`train` produced. Losses are dimensionless (1 ~ trivial baseline)."""

    output_dir: Path
    model_path: Optional[Path]
    steps: int
    best_step: int
    best_validation_loss: float
    stopped_early: bool
    validation: Dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers

def _resolve_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _merge_data(paths: Sequence[Union[str, os.PathLike, TrajectoryData]]) -> TrajectoryData:
    items = [p if isinstance(p, TrajectoryData) else load_trajectories(p) for p in paths]
    first = items[0]
    if len(items) == 1:
        return first
    for other in items[1:]:
        if not (np.array_equal(other.atomic_numbers, first.atomic_numbers)
                and np.allclose(other.masses, first.masses)
                and math.isclose(other.record_interval, first.record_interval)
                and other.frames_per_segment == first.frames_per_segment
                and other.periodic == first.periodic):
            raise DataError(f"{other.path} and {first.path} hold different systems or record settings")
    cat = lambda name: np.concatenate([getattr(d, name) for d in items])  # noqa: E731
    import hashlib

    return TrajectoryData(
        path=first.path, positions=cat("positions"), velocities=cat("velocities"), forces=cat("forces"),
        potential_energy=cat("potential_energy"), box=cat("box"), masses=first.masses,
        atomic_numbers=first.atomic_numbers, segment_ids=np.arange(sum(d.n_segments for d in items)),
        record_interval=first.record_interval, timestep=first.timestep, temperature=first.temperature,
        periodic=first.periodic, constraints=first.constraints, attrs=first.attrs,
        sha256=hashlib.sha256("".join(d.sha256 for d in items).encode()).hexdigest(),
    )


def _scales(data: TrajectoryData, segments: np.ndarray, k: int, momentum_difference: bool) -> Dict[str, float]:
    """rms per component of u = v sqrt(m), of (dq - v tau) sqrt(m) and of (v' - v) sqrt(m)
    (or v' sqrt(m)) over the training pairs."""
    sqrt_m = np.sqrt(data.masses)[None, None, :, None]
    q = data.positions[segments]
    v = data.velocities[segments]
    tau = k * data.record_interval
    u = v * sqrt_m
    res_q = (q[:, k:] - q[:, :-k] - v[:, :-k] * tau) * sqrt_m
    res_p = (v[:, k:] - v[:, :-k]) * sqrt_m if momentum_difference else v[:, k:] * sqrt_m
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))  # noqa: E731
    return {"velocity_scale": rms(u), "dq_scale": rms(res_q), "p_scale": rms(res_p)}


def _lr_factor(step: int, t: Dict[str, Any]) -> float:
    warm = int(t["warmup_steps"])
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if t["scheduler"] == "cosine":
        span = max(1, int(t["max_steps"]) - warm)
        progress = min(1.0, (step - warm) / span)
        floor = float(t["min_lr_ratio"])
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _min_cell_height(box: np.ndarray) -> float:
    a, b, c = box
    vol = abs(np.linalg.det(box))
    if vol == 0:
        return math.inf
    return float(min(vol / np.linalg.norm(np.cross(b, c)), vol / np.linalg.norm(np.cross(c, a)),
                     vol / np.linalg.norm(np.cross(a, b))))


class _ScaledForward(torch.nn.Module):
    """Exposes ``forward_scaled_batch`` as ``forward`` so that DDP hooks it."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, positions, velocities, masses, atomic_numbers, box):
        return self.model.forward_scaled_batch(positions, velocities, masses, atomic_numbers, box)


class _Losses:
    def __init__(self, weights: Dict[str, float], scales: Dict[str, float], masses: torch.Tensor,
                 temperature: float, energy_model: Optional[Callable]):
        self.w_q, self.w_p, self.w_e = (float(weights["positions"]), float(weights["velocities"]),
                                        float(weights["energy"]))
        self.inv_q2 = 1.0 / scales["dq_scale"] ** 2
        self.inv_p2 = 1.0 / scales["p_scale"] ** 2
        self.masses = masses
        self.sqrt_m = masses.sqrt().view(1, -1, 1)
        self.kT = KB * temperature
        self.energy_model = energy_model if self.w_e > 0 else None

    def __call__(self, y_q, y_p, batch) -> Dict[str, torch.Tensor]:
        t_q = (batch["new_positions"] - batch["positions"]) * self.sqrt_m
        t_p = batch["new_velocities"] * self.sqrt_m
        loss_q = ((y_q - t_q) ** 2).mean() * self.inv_q2
        loss_p = ((y_p - t_p) ** 2).mean() * self.inv_p2
        total = self.w_q * loss_q + self.w_p * loss_p
        out = {"loss_q": loss_q, "loss_p": loss_p}
        if self.energy_model is not None:
            n = self.masses.shape[0]
            new_q = batch["positions"] + y_q / self.sqrt_m
            new_v = y_p / self.sqrt_m
            terms = []
            for b in range(y_q.shape[0]):
                with torch.no_grad():
                    h0 = self.energy_model(batch["positions"][b], batch["box"][b]) + \
                        0.5 * (self.masses.view(-1, 1) * batch["velocities"][b] ** 2).sum()
                h1 = self.energy_model(new_q[b], batch["box"][b]) + 0.5 * (self.masses.view(-1, 1) * new_v[b] ** 2).sum()
                terms.append(((h1 - h0) / (n * self.kT)) ** 2)
            loss_e = torch.stack(terms).mean()
            total = total + self.w_e * loss_e
            out["loss_e"] = loss_e
        out["loss"] = total
        return out


def _check_output_dir(out: Path, resume: bool, overwrite: bool) -> bool:
    """Refuse unusable output directories (no side effects); True when resuming from a checkpoint."""
    ckpt = out / "checkpoint.pt"
    if resume and overwrite:
        raise ValueError("pass either resume=True or overwrite=True, not both")
    existing = out.exists() and any(out.iterdir())
    if resume:
        if ckpt.exists():
            return True
        if existing:
            raise FileNotFoundError(f"cannot resume: {out} has no checkpoint.pt")
        return False
    if existing:
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True or resume=True")
    return False


def _clear_outputs(out: Path) -> None:
    """Remove the files an earlier run wrote (and nothing else)."""
    for name in OUTPUT_FILES:
        if (out / name).exists():
            (out / name).unlink()


def _plot(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(log_path)))
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


# ------------------------------------------------------------------------------- train

def train(
    data: Union[str, os.PathLike, TrajectoryData, Sequence[Union[str, os.PathLike]]],
    output_dir: Union[str, os.PathLike],
    stride: float,
    hypers: Union[None, str, os.PathLike, Mapping[str, Any]] = None,
    overrides: Union[None, Mapping[str, Any], Sequence[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    energy_model: Optional[Callable] = None,
    progress: bool = True,
    export: bool = True,
) -> TrainResult:
    """Train a PET stride model for ``stride`` ps on trajectory file(s) ``data``.

    Parameters
    ----------
    data : trajectory file(s) from :func:`openmm_flashmd.data.generate.generate` (several
        files must hold the same system and record settings)
    output_dir : directory for logs, checkpoints and the exported model
    stride : ps; a multiple of the data's record interval
    hypers : YAML file or nested dict updating ``default_hypers.yaml``
    overrides : dotted keys, ``{"training.max_steps": 100}`` or ``["training.max_steps=100"]``
    resume : continue from ``output_dir/checkpoint.pt`` (hypers default to the checkpoint's;
        the model, loss and data sections must not change, the training section may)
    overwrite : replace the outputs of an earlier run in ``output_dir``
    device : ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    energy_model : optional differentiable potential for the energy-conservation term
        (``loss.energy`` > 0), called as ``energy_model(positions [N,3] nm, box [3,3] nm)``
        and returning kJ/mol
    progress : tqdm progress bar
    export : write ``model.pt`` and ``validation.json`` at the end
    """
    from openmm_flashmd.model.pet import PETHypers, PETStrideModel
    from openmm_flashmd.train.export import export_model

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    dev = _resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)

    out = Path(output_dir)
    resuming = _check_output_dir(out, resume, overwrite)
    ckpt: Optional[Dict[str, Any]] = None
    if resuming:
        ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
        h = load_hypers(ckpt["hypers"], overrides) if hypers is None else load_hypers(hypers, overrides)
        for section in ("model", "loss", "data"):
            if h[section] != ckpt["hypers"][section]:
                raise ValueError(f"cannot resume with different '{section}' hyper-parameters "
                                 f"({h[section]} vs checkpoint {ckpt['hypers'][section]})")
        if h["training"]["dtype"] != ckpt["hypers"]["training"]["dtype"]:
            raise ValueError("cannot resume with a different training.dtype")
    else:
        h = load_hypers(hypers, overrides)
    t, hd = h["training"], h["data"]

    # ------------------------------------------------------------------ data
    paths = list(data) if isinstance(data, (list, tuple)) else [data]
    tdata = _merge_data(paths)
    k = stride_frames(stride, tdata.record_interval, tdata.frames_per_segment)
    stride = k * tdata.record_interval
    if ckpt is not None:
        if ckpt["dataset_sha256"] != tdata.sha256:
            raise DataError("cannot resume: the training data differ from the checkpoint's (SHA-256 mismatch)")
        if not math.isclose(ckpt["model_spec"]["stride"], stride):
            raise ValueError(f"cannot resume: checkpoint stride is {ckpt['model_spec']['stride']} ps, not {stride} ps")
    if np.any(tdata.atomic_numbers < 1):
        raise DataError("the data contain particles without an element (atomic number 0); PET needs elements")
    element_masses = tdata.element_masses()
    cutoff = float(h["model"]["cutoff"])
    if tdata.periodic:
        height = min(_min_cell_height(b) for b in tdata.box[:, 0])
        if cutoff >= 0.5 * height:
            raise ValueError(f"model.cutoff {cutoff} nm must be below half the smallest cell height "
                             f"({0.5 * height:.4f} nm) of the data")
    if ckpt is not None:
        train_idx, val_idx = np.array(ckpt["split"]["train"]), np.array(ckpt["split"]["validation"])
    else:
        train_idx, val_idx = split_segments(tdata.n_segments, float(hd["validation_fraction"]), int(hd["split_seed"]))
    dtype = torch.float64 if t["dtype"] == "float64" else torch.float32
    torch.manual_seed(int(t["seed"]) + rank)
    gen = torch.Generator().manual_seed(int(t["seed"]) * 1000 + rank)
    train_ds = StridePairs(tdata, stride, train_idx, time_reversal=hd["time_reversal"],
                           random_rotations=hd["random_rotations"], dtype=dtype, generator=gen)
    val_ds = StridePairs(tdata, stride, val_idx, dtype=dtype) if len(val_idx) else None
    if len(train_ds) == 0:
        raise DataError("no training pairs: segments too short for this stride?")
    val_order = np.arange(len(val_ds)) if val_ds is not None else np.array([], dtype=np.int64)
    max_val = int(t["max_validation_pairs"])
    if max_val > 0 and len(val_order) > max_val:
        val_order = np.sort(np.random.default_rng(0).choice(len(val_order), max_val, replace=False))

    # ------------------------------------------------------------------ model
    phypers = PETHypers.from_dict(h["model"])
    scales = (ckpt["scales"] if ckpt is not None
              else _scales(tdata, train_idx, k, phypers.predict_momentum_difference))
    file_ids = lambda idx: [int(tdata.segment_ids[i]) for i in idx]  # noqa: E731
    provenance = {
        "dataset_sha256": tdata.sha256,
        "data": [str(Path(p.path if isinstance(p, TrajectoryData) else p).name) for p in paths],
        "data_description": str(tdata.attrs.get("description", "")),
        "data_temperature": tdata.temperature,
        "record_interval": tdata.record_interval,
        "training_segments": file_ids(train_idx),
        "validation_segments": file_ids(val_idx),
        "scales": scales,
    }
    spec = {"hypers": phypers.to_dict(), "stride": stride, "elements": sorted(element_masses),
            "masses": {str(z): m for z, m in element_masses.items()}, "periodic": bool(tdata.periodic),
            "provenance": provenance, "dtype": t["dtype"]}
    model = PETStrideModel(phypers, stride, spec["elements"], element_masses, spec["periodic"], provenance)
    model.set_scales(scales["velocity_scale"], scales["dq_scale"], scales["p_scale"])
    model.to(dtype=dtype, device=dev)
    net: torch.nn.Module = _ScaledForward(model)
    if distributed:
        # some PET parameters (e.g. the last layer's edge outputs) do not reach the loss
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                        find_unused_parameters=True)
    opt = torch.optim.AdamW(model.parameters(), lr=float(t["learning_rate"]),
                            weight_decay=float(t["weight_decay"]), betas=tuple(t["betas"]))
    masses_t = torch.as_tensor(tdata.masses, dtype=dtype, device=dev)
    numbers_t = torch.as_tensor(tdata.atomic_numbers, device=dev)
    losses = _Losses(h["loss"], scales, masses_t, tdata.temperature, energy_model)
    if float(h["loss"]["energy"]) > 0 and energy_model is None:
        raise ValueError("loss.energy > 0 needs an energy_model")

    state = {"step": 0, "epoch": 0, "cursor": 0, "best_val": math.inf, "best_step": -1, "bad": 0,
             "plateau_scale": 1.0, "plateau_bad": 0, "stopped_early": False, "best_state": None,
             "wall": 0.0, "acc": {"n": 0}}
    if ckpt is not None:
        model.load_state_dict(ckpt["model_state"])
        opt.load_state_dict(ckpt["optimizer_state"])
        state.update(ckpt["state"])
        state["best_state"] = ckpt["best_state"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        gen.set_state(ckpt["rng"]["generator"])

    def to_dev(batch):
        return {key: (v.to(dev) if torch.is_tensor(v) else v) for key, v in batch.items()}

    def validate() -> Dict[str, float]:
        if val_ds is None:
            return {"val_loss": math.nan, "val_loss_q": math.nan, "val_loss_p": math.nan,
                    "val_dq_rmse": math.nan, "val_v_rmse": math.nan}
        model.eval()
        sums: Dict = {}
        lq = lp = 0.0
        n = 0
        with torch.no_grad():
            bs = int(t["batch_size"]) * 4
            for s in range(0, len(val_order), bs):
                batch = to_dev(val_ds.get_batch(val_order[s:s + bs]))
                y_q, y_p = model.forward_scaled_batch(batch["positions"], batch["velocities"], masses_t,
                                                      numbers_t, batch["box"])
                parts = _Losses({"positions": 1, "velocities": 1, "energy": 0}, scales, masses_t,
                                tdata.temperature, None)(y_q, y_p, batch)
                m = y_q.shape[0]
                lq += float(parts["loss_q"]) * m
                lp += float(parts["loss_p"]) * m
                n += m
                sqrt_m = masses_t.sqrt().view(1, -1, 1)
                stride_errors((y_q / sqrt_m).cpu(), (y_p / sqrt_m).cpu(),
                              {key: v.cpu() for key, v in batch.items()}, tdata.atomic_numbers, sums)
        model.train()
        summary = _summarise(sums)
        wq, wp = float(h["loss"]["positions"]), float(h["loss"]["velocities"])
        return {"val_loss": (wq * lq + wp * lp) / n, "val_loss_q": lq / n, "val_loss_p": lp / n,
                "val_dq_rmse": summary["all"]["dq_rmse"], "val_v_rmse": summary["all"]["v_rmse"],
                "summary": summary}

    def save_checkpoint() -> None:
        if rank != 0:
            return
        payload = {
            "format": "openmm-flashmd-checkpoint", "version": 1, "hypers": h, "model_spec": spec,
            "scales": scales, "dataset_sha256": tdata.sha256,
            "split": {"train": train_idx.tolist(), "validation": val_idx.tolist()},
            "model_state": model.state_dict(), "optimizer_state": opt.state_dict(),
            "state": {key: v for key, v in state.items() if key != "best_state"},
            "best_state": state["best_state"],
            "rng": {"torch": torch.get_rng_state(), "generator": gen.get_state()},
        }
        tmp = out / "checkpoint.pt.tmp"
        torch.save(payload, tmp)
        os.replace(tmp, out / "checkpoint.pt")

    log_path = out / "log.csv"
    if rank == 0:
        if overwrite and not resuming:
            _clear_outputs(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "hypers.yaml").write_text(yaml.safe_dump(h, sort_keys=False))
        (out / "split.json").write_text(json.dumps(
            {"training_segments": file_ids(train_idx), "validation_segments": file_ids(val_idx),
             "dataset_sha256": tdata.sha256}, indent=1))
        if not log_path.exists():
            with open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(LOG_FIELDS)

    from tqdm.auto import tqdm

    max_steps = int(t["max_steps"])
    bar = tqdm(total=max_steps, initial=state["step"], disable=not progress or rank != 0, unit="step",
               desc="train")
    rng_epoch = lambda epoch: np.random.default_rng([int(t["seed"]), epoch])  # noqa: E731
    perm = rng_epoch(state["epoch"]).permutation(len(train_ds))
    batch_size = int(t["batch_size"])
    patience = int(t["early_stopping_patience"])
    start_time = time.time() - state["wall"]
    model.train()
    try:
        while state["step"] < max_steps and not state["stopped_early"]:
            global_bs = batch_size * world
            if state["cursor"] + global_bs > len(perm):
                state["epoch"] += 1
                state["cursor"] = 0
                perm = rng_epoch(state["epoch"]).permutation(len(train_ds))
            chunk = perm[state["cursor"]:state["cursor"] + global_bs]
            if len(chunk) < global_bs:  # fewer pairs than one global batch: take all
                chunk = perm
            mine = chunk[rank::world] if len(chunk) >= world else chunk
            state["cursor"] += global_bs
            lr = float(t["learning_rate"]) * _lr_factor(state["step"], t) * state["plateau_scale"]
            for group in opt.param_groups:
                group["lr"] = lr
            batch = to_dev(train_ds.get_batch(mine))
            y_q, y_p = net(batch["positions"], batch["velocities"], masses_t, numbers_t, batch["box"])
            parts = losses(y_q, y_p, batch)
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
            for key in ("loss", "loss_q", "loss_p", "loss_e"):
                if key in parts:
                    acc[key] = acc.get(key, 0.0) + float(parts[key].detach())
            state["step"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3g}", val=f"{state['best_val']:.3g}", refresh=False)

            last = state["step"] >= max_steps
            if state["step"] % int(t["validate_every"]) == 0 or last:
                val = validate()
                improved = val["val_loss"] < state["best_val"] or (val_ds is None and last)
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
                row = {"step": state["step"], "epoch": state["epoch"], "lr": lr,
                       "train_loss": acc.get("loss", 0.0) / n, "train_loss_q": acc.get("loss_q", 0.0) / n,
                       "train_loss_p": acc.get("loss_p", 0.0) / n,
                       "train_loss_e": acc.get("loss_e", math.nan) / n if "loss_e" in acc else math.nan,
                       "best_val_loss": state["best_val"], "wall_s": time.time() - start_time}
                row.update({key: v for key, v in val.items() if key != "summary"})
                state["acc"] = {"n": 0}
                state["wall"] = time.time() - start_time
                if rank == 0:
                    with open(log_path, "a", newline="") as f:
                        csv.writer(f).writerow([row[key] for key in LOG_FIELDS])
                    _plot(log_path, out / "loss_curve.png")
            if state["step"] % int(t["checkpoint_every"]) == 0 or last or state["stopped_early"]:
                state["wall"] = time.time() - start_time
                save_checkpoint()
    finally:
        bar.close()
    save_checkpoint()

    # ------------------------------------------------------------------ export
    if state["best_state"] is not None:
        model.load_state_dict(state["best_state"])
    final = validate()
    validation = {"loss": final["val_loss"], "step": state["best_step"]}
    if "summary" in final:
        validation.update({"errors": final["summary"], "segments": file_ids(val_idx), "stride": stride,
                           "n_pairs": int(len(val_order))})
    model_path = None
    if export and rank == 0:
        model_path = export_model(model, out / "model.pt", provenance=provenance, validation=validation,
                                  overwrite=True)
        (out / "validation.json").write_text(json.dumps(validation, indent=2))
    if distributed:
        torch.distributed.barrier()
    return TrainResult(output_dir=out, model_path=model_path, steps=state["step"], best_step=state["best_step"],
                       best_validation_loss=state["best_val"], stopped_early=state["stopped_early"],
                       validation=validation)
