"""Model cards: a short markdown description of a trained stride model.

A card says what the model was trained on (data, stride, hyper-parameters), how well it
predicts held-out strides, and, when a validation record from ``benchmarks/validate.py`` is
given, how its dynamics compare with reference MD. Everything comes from the model's own
metadata and the records passed in; nothing is typed by hand.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from openmm_flashmd.model.protocol import ModelLike, load_model, read_metadata
from openmm_flashmd.train.evaluate import _symbol

__all__ = ["model_card"]

def _held_out_section(validation: Dict[str, Any], evaluation: Optional[Dict[str, Any]] = None) -> List[str]:
    errors = evaluation or validation.get("errors") or {}
    if not errors:
        return []
    source = (f"Table: `openmm-flashmd evaluate` on {evaluation.get('n_pairs')} held-out pairs "
              f"(segments: {evaluation.get('segments_used')}). " if evaluation else "")
    lines = ["## Held-out strides", "",
             f"Best validation loss {validation.get('loss', float('nan')):.4f} at step {validation.get('step')} "
             f"({validation.get('n_pairs')} pairs from held-out segments {validation.get('segments')}). " + source +
             "Improvement = baseline RMSE / model RMSE (baselines: free flight q + vτ for Δq, "
             "unchanged velocities for v′). KE ratio = the model's kinetic energy after the stride / the "
             "reference's, per element (below 1: the model damps that element).", "",
             "| atoms | Δq RMSE (nm) | free flight (nm) | improvement | v′ RMSE (nm/ps) | unchanged (nm/ps) | "
             "improvement | KE ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    guess = "dq_guess_rmse" in errors["all"]
    if guess:
        lines[2] += (" The model corrects the frozen-force Verlet guess (`openmm_flashmd.integrator.guess`); the "
                     "guess columns give that guess's own errors.")
        lines[-2] += " Verlet guess Δq (nm) | Verlet guess v′ (nm/ps) |"
        lines[-1] += "---:|---:|"
    rows = [("all", errors["all"])] + [(_symbol(int(z)), e) for z, e in sorted(errors.get("per_element", {}).items())]
    for label, e in rows:
        ratio = e.get("kinetic_energy_ratio")
        # three significant digits: a 4 fs stride's Δq errors are a few 1e-5 nm
        lines.append(f"| {label} | {e['dq_rmse']:.3g} | {e['dq_free_flight_rmse']:.3g} | {e['dq_improvement']:.2f}× | "
                     f"{e['v_rmse']:.3g} | {e['v_unchanged_rmse']:.3g} | {e['v_improvement']:.2f}× | "
                     f"{'—' if ratio is None else f'{ratio:.2f}'} |"
                     + (f" {e['dq_guess_rmse']:.3g} | {e['v_guess_rmse']:.3g} |" if guess else ""))
    energy = (evaluation or {}).get("energy_error_per_stride") or {}
    for name, label in (("model", "the model"), ("guess", "the Verlet guess")):
        if name in energy:
            parts = ", ".join(f"{part} {energy[name][part]['mean']:+.2f} ± {energy[name][part]['sd']:.2f}"
                              for part in ("potential", "kinetic", "total"))
            lines += ["", f"Energy error per stride of {label} on the data's System (kJ/mol, mean ± sd over the "
                          f"pairs, {energy['n_atoms']} atoms): {parts}."]
    return lines + [""]


def _dynamics_section(record: Dict[str, Any]) -> List[str]:
    rows = record.get("card_rows") or []
    if not rows:
        return []
    lines = ["## Dynamics against reference MD", "",
             f"From `benchmarks/validate.py` ({record.get('lengths', 'full')} lengths); see "
             "`benchmarks/results/validation/summary.md` for plots.", "",
             "| quantity | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return lines + [""]


def model_card(
    model: ModelLike,
    name: str,
    reproduce: Optional[str] = None,
    dynamics: Optional[Dict[str, Any]] = None,
    notes: Optional[str] = None,
    held_out: Optional[Dict[str, Any]] = None,
) -> str:
    """Markdown model card of ``model`` (a module, file or bundled name).

    Parameters
    ----------
    name : the model's name (e.g. ``water-16fs``)
    reproduce : shell commands that rebuild the model (shown verbatim)
    dynamics : optional record with ``card_rows`` (list of ``[quantity, value]`` strings)
        summarising a validation against reference MD
    notes : free text on limitations, shown last
    held_out : optional result of :func:`openmm_flashmd.train.evaluate.evaluate` on held-out
        data, shown instead of the errors recorded in the metadata at training time
    """
    meta = read_metadata(load_model(model))
    prov = meta.get("provenance") or {}
    hypers = meta.get("hypers") or {}
    elements = ", ".join(_symbol(int(z)) for z in meta.get("elements", []))
    masses = ", ".join(f"{_symbol(int(z))} {m:g}" for z, m in sorted((meta.get("masses") or {}).items()))
    lines = [f"# Model card: `{name}`", "",
             f"PET stride model: one call advances positions and velocities by **{meta['stride'] * 1000:g} fs** "
             f"({meta['stride']:g} ps). Elements {elements}; masses (Da) {masses}; "
             f"{'periodic' if meta.get('periodic') else 'non-periodic'} systems; cutoff {meta.get('cutoff')} nm.", "",
             "## Data", "",
             f"- {prov.get('data_description', 'unknown system')} at {prov.get('data_temperature', '?')} K",
             f"- files {', '.join(prov.get('data', []))} (SHA-256 {str(prov.get('dataset_sha256', '?'))[:16]}…), "
             f"frames every {prov.get('record_interval', '?')} ps",
             f"- {len(prov.get('training_segments', []))} training segments, "
             f"{len(prov.get('validation_segments', []))} held-out validation segments", "",
             "## Hyper-parameters", "",
             "| key | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(hypers.items())]
    lines.append("")
    versions = prov.get("package_versions") or {}
    if versions:
        lines += ["Trained with " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".", ""]
    lines += _held_out_section(meta.get("validation") or {}, held_out)
    lines += _dynamics_section(dynamics or {})
    if reproduce:
        lines += ["## Reproduce", "", "```bash", reproduce.strip(), "```", ""]
    if notes:
        lines += ["## Limitations", "", notes.strip(), ""]
    return "\n".join(lines)
