"""benchmarks/trust_check_power.py: reference MD under simulate's start protocol, judged by the
report's own temperature check."""

import json
import math

import pytest

from flashmd_data_helpers import load_benchmark


def test_trust_check_power_records_each_run_as_the_report_would_judge_it(tmp_path):
    power = load_benchmark("trust_check_power")
    out = tmp_path / "power.json"
    assert power.main(["--time", "1.6", "--seeds", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (length,) = result["lengths"]
    assert length["time_ps"] == 1.6 and len(length["runs"]) == 2
    assert set(result["expected_K"]) == {"all", "H", "O"} and result["expected_K"]["all"] == 300.0
    for run in length["runs"]:
        deviations = run["deviation_K"]
        assert set(deviations) == {"all", "H", "O"} and all(math.isfinite(d) for d in deviations.values())
        errors = run["standard_error_K"]
        assert set(errors) == {"all", "H", "O"} and all(e > 0 for e in errors.values())
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
