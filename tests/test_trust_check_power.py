"""benchmarks/trust_check_power.py: reference MD under simulate's start protocol, judged by the
report's own temperature check."""

import json
import math

import pytest

from flashmd_data_helpers import load_benchmark


def test_trust_check_power_records_each_run_as_the_report_would_judge_it(tmp_path):
    power = load_benchmark("trust_check_power")
    out = tmp_path / "power.json"
    assert power.main(["--time", "0.32", "--seeds", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    (length,) = result["lengths"]
    assert length["time_ps"] == 0.32 and len(length["runs"]) == 2
    assert set(result["expected_K"]) == {"all", "H", "O"} and result["expected_K"]["all"] == 300.0
    for run in length["runs"]:
        deviations = run["deviation_K"]
        assert set(deviations) == {"all", "H", "O"} and all(math.isfinite(d) for d in deviations.values())
        assert run["passed"] == all(abs(d) <= result["threshold_K"] for d in deviations.values())
    first, second = (run["deviation_K"]["all"] for run in length["runs"])
    assert first != second  # the seeds give different runs
    assert length["pass_fraction"] == sum(run["passed"] for run in length["runs"]) / 2
    with pytest.raises(SystemExit, match="--overwrite"):
        power.main(["--time", "0.32", "--seeds", "1", "--out", str(out)])
