"""Plots of a validation (PNG): temperatures over time, RDFs, Ramachandran histograms, NVE
temperature, and per-element temperature and diffusion against Langevin friction."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _running_mean(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_temperatures(path: Path, runs: Dict[str, Dict[str, np.ndarray]], target: float, window_ps: float) -> None:
    plt = _plt()
    keys = sorted({k[2:] for series in runs.values() for k in series if k.startswith("T_")},
                  key=lambda k: (k != "all", k))
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), dpi=100, squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, series in runs.items():
            if f"T_{key}" not in series or len(series[f"T_{key}"]) == 0:
                continue
            t, values = series["time"], series[f"T_{key}"]
            dt = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
            window = max(1, int(round(window_ps / dt)))
            smooth = _running_mean(values, window)
            ax.plot(t[len(t) - len(smooth):], smooth, lw=1.0, label=label)
        ax.axhline(target, color="k", lw=0.8, ls="--")
        ax.set_title(key if key != "all" else "all atoms", fontsize=9)
        ax.set_xlabel("time (ps)")
    axes[0][0].set_ylabel(f"T (K), running mean {window_ps:g} ps")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_rdfs(path: Path, r: np.ndarray, curves: Dict[str, Dict[str, np.ndarray]]) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.4 * len(curves), 2.8), dpi=100, squeeze=False)
    for ax, (pair, by_label) in zip(axes[0], curves.items()):
        for label, g in by_label.items():
            ax.plot(r, g, lw=1.0, label=label)
        ax.set_title(pair, fontsize=9)
        ax.set_xlabel("r (nm)")
    axes[0][0].set_ylabel("g(r)")
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_ramachandran(path: Path, hists: Dict[str, np.ndarray]) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(hists), figsize=(3.2 * len(hists), 3.0), dpi=100, squeeze=False)
    positive = [h[h > 0] for h in hists.values() if np.any(h > 0)]
    vmin = float(np.log10(min(p.min() for p in positive))) if positive else None
    vmax = float(np.log10(max(p.max() for p in positive))) if positive else None
    for ax, (label, hist) in zip(axes[0], hists.items()):
        image = np.log10(np.where(hist > 0, hist, np.nan))
        ax.imshow(image.T, origin="lower", extent=(-180, 180, -180, 180), cmap="viridis", aspect="equal",
                  vmin=vmin, vmax=vmax)
        ax.set_title(label + " (log10 p)", fontsize=9)
        ax.set_xlabel("φ (°)")
        ax.set_xticks([-180, -90, 0, 90, 180])
        ax.set_yticks([-180, -90, 0, 90, 180])
    axes[0][0].set_ylabel("ψ (°)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_nve(path: Path, t: np.ndarray, temp: np.ndarray, target: float) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 2.8), dpi=100)
    ax.plot(t, temp, lw=0.8)
    ax.axhline(target, color="k", lw=0.8, ls="--")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("T (K)")
    ax.set_title('NVE, splitting "F" (no filter)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_friction(path: Path, rows: List[Dict[str, Any]]) -> None:
    plt = _plt()
    rates = [row["collision_rate_per_ps"] for row in rows]
    fig, (ax_t, ax_d) = plt.subplots(1, 2, figsize=(10, 3.8))
    elements = sorted({k for row in rows for k in (row["flashmd"].get("temperature_K") or {}) if k != "all"})
    for element in elements:
        ax_t.plot(rates, [((row["flashmd"].get("temperature_K") or {}).get(element) or {}).get("dev_reference",
                                                                                             math.nan)
                          for row in rows], "o-", label=element)
    ax_t.axhline(0.0, color="k", lw=0.8)
    ax_t.set(xscale="log", xlabel="Langevin friction (1/ps)", ylabel="T − reference MD (K)",
             title="per-element temperature, FlashMD + filter")
    ax_t.legend()
    if any(row["flashmd"].get("diffusion_O_nm2_per_ps") is not None for row in rows):
        for key, label in (("flashmd", "FlashMD + filter"), ("reference", "reference MD")):
            ax_d.plot(rates, [row[key].get("diffusion_O_nm2_per_ps") or math.nan for row in rows], "o-", label=label)
        ax_d.set(xscale="log", xlabel="Langevin friction (1/ps)", ylabel="D(O) (nm²/ps)",
                 title="O self-diffusion (dynamics)")
        ax_d.legend()
    else:
        ax_d.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
