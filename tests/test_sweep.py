"""benchmarks/sweep.py: configurations trained for one wall-time budget, resumable, rendered."""

import json

import numpy as np
import pytest
import yaml

from flashmd_data_helpers import FAST, TINY_MODEL, diatomics, load_benchmark
from openmm_flashmd.data.generate import generate


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    system, _, positions = diatomics()
    work = tmp_path_factory.mktemp("sweep")
    data = work / "dimers.h5"
    generate(data, system, positions, n_segments=8, **FAST)
    common = [f"{k}={v}" for k, v in TINY_MODEL.items() if k != "model.d_pet"]
    common += ["training.warmup_steps=2", "training.validate_every=10", "training.checkpoint_every=10",
               "training.batch_size=8", "data.validation_fraction=0.25"]
    argv = ["dimers", str(data), "--stride", "0.016", "--budget", "1.5", "--probe-steps", "5",
            "--config", "narrow: model.d_pet=8", "--config", "wide: model.d_pet=32",
            "--runs-dir", str(work / "runs"), "--out", str(work / "sweep.json"), "--no-progress"]
    for override in common:
        argv += ["--set", override]
    sweep = load_benchmark("sweep")
    assert sweep.main(argv) == 0
    return sweep, argv, work


def test_each_configuration_trains_for_the_budget(sweep_run):
    _, _, work = sweep_run
    result = json.loads((work / "sweep.json").read_text())["sweeps"]["dimers"]
    assert result["settings"]["budget_s"] == 1.5
    assert set(result["configs"]) == {"narrow", "wide"}
    for label, run in result["configs"].items():
        assert run["steps"] == max(1, int(1.5 * run["steps_per_s"]))
        hypers = yaml.safe_load((work / "runs" / label / "hypers.yaml").read_text())
        assert hypers["training"]["max_steps"] == run["steps"]
        assert not (work / "runs" / f"{label}.probe").exists()
        errors = run["held_out"]["per_element"]
        assert errors and all(e["dq_rmse"] > 0 and e["v_rmse"] > 0 for e in errors.values())
    # the wider model has more parameters (d_pet 32 against 8)
    assert result["configs"]["wide"]["parameters"] > result["configs"]["narrow"]["parameters"]


def test_a_second_call_keeps_finished_configurations(sweep_run, capsys):
    sweep, argv, work = sweep_run
    before = (work / "sweep.json").read_text()
    stamp = (work / "runs" / "narrow" / "model.pt").stat().st_mtime_ns
    assert sweep.main(argv) == 0
    assert "narrow: kept" in capsys.readouterr().out
    assert (work / "sweep.json").read_text() == before
    assert (work / "runs" / "narrow" / "model.pt").stat().st_mtime_ns == stamp


def test_another_budget_is_refused_on_the_same_runs(sweep_run):
    sweep, argv, _ = sweep_run
    other = list(argv)
    other[other.index("--budget") + 1] = "150"
    with pytest.raises(SystemExit, match="other settings"):
        sweep.main(other)
    with pytest.raises(SystemExit, match="another budget"):
        sweep.main(other + ["--overwrite"])


def test_bad_configuration_is_one_clear_error(sweep_run):
    sweep, argv, _ = sweep_run
    with pytest.raises(SystemExit, match="expected 'LABEL: section.key=value"):
        sweep.parse_config("wide model.d_pet=32")
    with pytest.raises(SystemExit, match="distinct"):
        sweep.main(argv + ["--config", "wide: model.d_pet=16"])


def test_report_renders_the_sweep(sweep_run):
    _, _, work = sweep_run
    report = load_benchmark("report")
    lines = report.render_sweep(json.loads((work / "sweep.json").read_text()), "sweep.json")
    text = "\n".join(lines)
    assert "Sweep at a fixed training budget: dimers" in text
    assert "| narrow | model.d_pet=8 |" in text and "| wide | model.d_pet=32 |" in text
    # both runs compared at the last step and the last wall time both reached
    data = json.loads((work / "sweep.json").read_text())
    configs = data["sweeps"]["dimers"]["configs"]
    step = min(run["val_loss_curve"][-1][0] for run in configs.values())
    assert f"Validation loss at step {step} / at " in text
    first = configs["narrow"]["val_loss_curve"]
    at_step = float(np.interp(step, [p[0] for p in first], [p[2] for p in first]))
    assert f"narrow {at_step:.4f} / " in text
