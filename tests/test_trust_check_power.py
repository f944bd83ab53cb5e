"""benchmarks/trust_check_power.py: reference MD under simulate's start protocol, judged by the
report's own temperature check."""

import json
import math

import numpy as np
import pytest

from flashmd_data_helpers import load_benchmark


def test_trust_check_power_records_each_run_as_the_report_would_judge_it(tmp_path):
    power = load_benchmark("trust_check_power")
    out = tmp_path / "power.json"
    assert power.main(["--time", "0.8", "1.6", "--seeds", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    short, length = result["lengths"]
    assert (short["time_ps"], length["time_ps"]) == (0.8, 1.6) and len(length["runs"]) == 2
    columns = {"all", "H", "O", "translation", "rotation"}  # the columns simulate's report judges in a solvent
    assert set(result["expected_K"]) == columns
    assert result["expected_K"]["all"] == result["expected_K"]["translation"] == result["expected_K"]["rotation"] == 300.0
    for run in length["runs"]:
        deviations = run["deviation_K"]
        assert set(deviations) == columns and all(math.isfinite(d) for d in deviations.values())
        errors = run["standard_error_K"]
        assert set(errors) == columns and all(e > 0 for e in errors.values())
        within = all(abs(d) <= result["threshold_K"] for d in deviations.values())
        assert run["within_threshold"] == within
        resolved = all(result["confidence_standard_errors"] * e <= result["threshold_K"] for e in errors.values())
        assert run["verdict"] == ("failed" if not within else "passed" if resolved else "not_judged")
    first, second = (run["deviation_K"]["all"] for run in length["runs"])
    assert first != second  # the seeds give different runs
    for verdict in ("passed", "failed", "not_judged"):
        assert length[f"{verdict}_fraction"] == sum(run["verdict"] == verdict for run in length["runs"]) / 2
    with pytest.raises(SystemExit, match="--overwrite"):
        power.main(["--time", "0.32", "--seeds", "1", "--out", str(out)])


def test_a_shorter_length_is_judged_on_the_first_part_of_the_same_run():
    power = load_benchmark("trust_check_power")
    from openmm_flashmd.systems import get_system

    built = get_system("water-rigid")
    short = power.reference_series(built, 3, 0.48, 0.002, 1, "Reference")  # repeats a run bit for bit
    long = power.reference_series(built, 3, 0.96, 0.002, 1, "Reference")
    first = power.prefix(long, 0.48)
    assert set(short) == set(first) == {"all", "H", "O", "translation", "rotation"}
    for name, values in short.items():
        assert len(values) == len(first[name]) == 3
        np.testing.assert_allclose(first[name], values, rtol=1e-9)
    assert not np.allclose(long["all"][3:], short["all"])  # the rest of the run is not its start again


def test_trust_check_power_judges_simulate_runs_of_a_model(tmp_path):
    power = load_benchmark("trust_check_power")
    out = tmp_path / "model.json"
    assert power.main(["--model", "water-rigid-16fs", "--time", "1.28", "--seeds", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "water-rigid-16fs" and result["timestep_ps"] is None
    (run,) = result["lengths"][0]["runs"]
    assert isinstance(run["other_failed_checks"], list)
    within = all(abs(d) <= result["threshold_K"] for d in run["deviation_K"].values())
    assert run["within_threshold"] == within and (run["verdict"] == "failed") == (not within)


def test_runs_of_other_seeds_are_added_to_an_earlier_result(tmp_path):
    power = load_benchmark("trust_check_power")
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert power.main(["--time", "0.32", "0.64", "--seeds", "2", "--out", str(first)]) == 0
    before = json.loads(first.read_text())
    assert power.main(["--time", "0.64", "--seeds", "1", "--first-seed", "2", "--add-to", str(first),
                       "--out", str(second)]) == 0
    merged = json.loads(second.read_text())
    short, long = merged["lengths"]
    assert short == before["lengths"][0]  # a length only the earlier result has is kept as it was
    assert [r["seed"] for r in long["runs"]] == [0, 1, 2] and merged["seeds"] == 3
    assert long["runs"][:2] == before["lengths"][1]["runs"]
    assert long["failed_fraction"] == sum(r["verdict"] == "failed" for r in long["runs"]) / 3
    sd = np.std([r["deviation_K"]["O"] for r in long["runs"]], ddof=1)
    assert long["deviation_sd_K"]["O"] == pytest.approx(sd)
    assert merged["wall_s"] > before["wall_s"]
    with pytest.raises(SystemExit, match="already holds runs of 0.64 ps with seed"):
        power.main(["--time", "0.64", "--seeds", "1", "--first-seed", "1", "--add-to", str(second)])
    with pytest.raises(SystemExit, match="other settings .*timestep_ps"):
        power.main(["--time", "0.64", "--seeds", "1", "--first-seed", "5", "--timestep", "0.001",
                    "--add-to", str(second)])
    assert json.loads(second.read_text()) == merged  # a refused addition leaves the file as it was

    later = tmp_path / "later.json"  # two processes' results, merged without running anything
    assert power.main(["--time", "0.32", "0.64", "--seeds", "1", "--first-seed", "2", "--out", str(later)]) == 0
    assert power.main(["--merge", str(first), str(later), "--out", str(tmp_path / "both.json")]) == 0
    both = json.loads((tmp_path / "both.json").read_text())
    assert [[r["seed"] for r in row["runs"]] for row in both["lengths"]] == [[0, 1, 2], [0, 1, 2]]
