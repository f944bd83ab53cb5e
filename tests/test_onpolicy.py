"""On-policy reference data: reference MD from states a stride model visits."""

import json
from pathlib import Path

import numpy as np
import pytest

from flashmd_data_helpers import constrained_dimer_file
from openmm_flashmd import save_model
from openmm_flashmd.data.dataset import load_trajectories, merge_trajectories
from openmm_flashmd.data.onpolicy import onpolicy_data
from openmm_flashmd.model import VerletGuessStrideModel


@pytest.fixture(scope="module")
def dimer_data(tmp_path_factory):
    return constrained_dimer_file(tmp_path_factory.mktemp("onpolicy") / "dimers.h5", 3)


def test_onpolicy_segments_start_where_the_model_went(dimer_data, tmp_path):
    # a deliberately wrong stride model (guess scaled by 1.05): its states leave the data's manifold
    model = save_model(VerletGuessStrideModel(0.008, 2, guess_error=0.05), tmp_path / "wrong.pt")
    out = onpolicy_data(model, dimer_data, tmp_path / "onpolicy.h5", 2, burst_strides=(3, 5), seed=1,
                        platform="Reference", progress=False)
    data, extra = load_trajectories(dimer_data), load_trajectories(out)
    assert extra.n_segments == 2 and extra.frames_per_segment == data.frames_per_segment
    assert extra.record_interval == data.record_interval and "on-policy" in extra.attrs["description"]
    starts = extra.positions[:, 0]
    distances = np.linalg.norm(data.positions.reshape(-1, 1, 8, 3) - starts[None], axis=-1).max(-1)
    assert distances.min() > 1e-4  # no segment starts at a stored frame: the model moved it
    bonds = np.linalg.norm(extra.positions[..., 0::2, :] - extra.positions[..., 1::2, :], axis=-1)
    np.testing.assert_allclose(bonds, 0.15, atol=1e-6)  # reference MD with the constraints
    assert merge_trajectories([dimer_data, out]).n_segments == 5  # trains together with the original


def test_onpolicy_segments_can_be_shorter(dimer_data, tmp_path):
    model = save_model(VerletGuessStrideModel(0.008, 2), tmp_path / "guess.pt")
    out = onpolicy_data(model, dimer_data, tmp_path / "short.h5", 1, burst_strides=(1, 2), segment_length=0.012,
                        platform="Reference", progress=False)
    assert load_trajectories(out).frames_per_segment == 4  # 0.012 ps at 0.004 ps per frame, plus frame 0


def test_onpolicy_errors_benchmark_compares_visited_and_reference_states(dimer_data, tmp_path):
    """benchmarks/onpolicy_errors.py with a wrong guess model (its guess scaled by 1.05): errors on
    both kinds of states, constrained errors, a rendered row each, and the trajectory file reused."""
    from flashmd_data_helpers import load_benchmark

    bench, report = load_benchmark("onpolicy_errors"), load_benchmark("report")
    model = save_model(VerletGuessStrideModel(0.008, 2, guess_error=0.05), tmp_path / "wrong.pt")
    out = tmp_path / "onpolicy_errors.json"
    argv = [str(model), str(dimer_data), "--burst-ps", "0.024", "--segments", "2", "--work-dir", str(tmp_path / "work"),
            "--out", str(out), "--reference-segments", "0,1"]
    assert bench.main(argv) == 0
    entry = json.loads(out.read_text())["models"]["wrong"]
    assert entry["burst_strides"] == 3 and entry["onpolicy"]["n_pairs"] > 0 and entry["reference"]["n_pairs"] > 0
    for states in ("onpolicy", "reference"):
        for errors in entry[states]["per_element"].values():
            assert errors["v_constrained_rmse"] > 0 and 0.5 < errors["kinetic_energy_ratio_constrained"] < 2
        assert all(0.5 < r < 2 for r in entry[states]["molecule_kinetic_energy_ratio"].values())
    lines = report.render_onpolicy_errors(json.loads(out.read_text()), "onpolicy_errors.json")
    assert sum(line.startswith("| wrong |") for line in lines) == 2
    with pytest.raises(SystemExit, match="already has"):
        bench.main(argv)
    kept = Path(entry["onpolicy_file"])
    stamp = kept.stat().st_mtime_ns
    assert bench.main(argv + ["--overwrite"]) == 0 and kept.stat().st_mtime_ns == stamp  # reused, not regenerated


def test_evaluation_measures_the_molecules_translation_and_rotation(dimer_data):
    """EnergyErrors' kinetic-energy ratios of the molecules' translation and rotation: the exact
    answer keeps both, halved velocities keep a quarter of each, a model that stops the molecules'
    centres keeps none of the translation and all of the rotation (four constrained dimers)."""
    import torch

    from openmm_flashmd.train.evaluate import EnergyErrors, format_table

    data = load_trajectories(dimer_data)
    frames = [(s, f) for s in range(data.n_segments) for f in (2, 5)]
    batch = {"new_positions": torch.as_tensor(np.stack([data.positions[s, f] for s, f in frames])),
             "new_velocities": torch.as_tensor(np.stack([data.velocities[s, f] for s, f in frames])),
             "box": torch.as_tensor(np.stack([data.box[s, f] for s, f in frames]))}
    m = data.masses[:, None]
    pairs = batch["new_velocities"].numpy().reshape(len(frames), -1, 2, 3)
    centre = (pairs * m.reshape(-1, 2, 1)).sum(2, keepdims=True) / m.reshape(-1, 2, 1).sum(1, keepdims=True)
    still = torch.as_tensor((pairs - centre).reshape(len(frames), -1, 3))
    ratios = {}
    for name, velocities in (("exact", batch["new_velocities"]), ("halved", 0.5 * batch["new_velocities"]),
                             ("still", still)):
        errors = EnergyErrors(data)
        errors.add(batch["new_positions"], velocities, batch)
        ratios[name] = errors.molecule_kinetic_energy_ratios()
    assert ratios["exact"] == pytest.approx({"translation": 1.0, "rotation": 1.0}, rel=1e-6)
    assert ratios["halved"] == pytest.approx({"translation": 0.25, "rotation": 0.25}, rel=1e-6)
    assert ratios["still"] == pytest.approx({"translation": 0.0, "rotation": 1.0}, abs=1e-6)
    table = format_table({"stride": 0.008, "n_pairs": 1, "segments_used": "all", "molecule_kinetic_energy_ratio":
                          ratios["halved"], "per_element": {}, "all": {"dq_rmse": 1.0, "dq_free_flight_rmse": 1.0,
                          "dq_improvement": 1.0, "v_rmse": 1.0, "v_unchanged_rmse": 1.0, "v_improvement": 1.0}})
    assert "translation 0.2500, rotation 0.2500" in table
    # the potential-energy error split into the molecules' centres and orientations: a dimer moved
    # whole (in the external well: its energy changes) is all centres, nothing of orientation
    moved = batch["new_positions"].numpy().copy()
    moved[:, 0:2] += 0.02
    errors = EnergyErrors(data)
    errors.add(torch.as_tensor(moved), batch["new_velocities"], batch)
    summary = errors.summary(data.n_atoms)["model"]
    assert abs(summary["potential"]["mean"]) > 1e-3
    assert summary["potential_centres_only"]["mean"] == pytest.approx(summary["potential"]["mean"], rel=1e-6)
    assert summary["potential_orientations_only"]["mean"] == pytest.approx(0.0, abs=1e-6)
