"""benchmarks/validate.py end to end in quick mode on the water box, with a tiny untrained PET."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from flashmd_data_helpers import load_benchmark
from openmm_flashmd import save_model
from openmm_flashmd.model.pet import PETHypers, PETStrideModel
from openmm_flashmd.systems import get_system
from openmm_flashmd.validation import target as target_module


@pytest.fixture(scope="module")
def tiny_water_model(tmp_path_factory):
    """An untrained PET stride model (16 fs) with the water box's elements and masses."""
    built = get_system("water")
    masses = {atom.element.atomic_number: built.system.getParticleMass(atom.index)._value
              for atom in built.topology.atoms()}
    torch.manual_seed(0)
    hypers = PETHypers(cutoff=0.3, d_pet=8, d_node=8, d_feedforward=8, num_heads=2, num_attention_layers=1,
                       num_gnn_layers=1)
    model = PETStrideModel(hypers, 0.016, sorted(masses), masses, periodic=True)
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny-water-16fs.pt")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """validate.py --threads sets torch's thread count; give other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_an_explosion_is_a_hot_window_not_a_hot_sample():
    """Alanine dipeptide in reference MD reached 722 K for a few samples (fallback_thresholds.json):
    one hot sample is no explosion; a window of them, or a non-finite temperature, is."""

    from openmm_flashmd.validation.sampling import EXPLOSION_WINDOW_PS, Recorder

    recorder = Recorder(np.ones(3), ["H"] * 3, 9.0, explosion_K=600.0)
    for t, T in enumerate([300.0] * 20 + [722.0, 350.0] + [300.0] * 8):
        recorder.time.append(0.1 * (t + 1))
        recorder.velocities_T.append(T)
        assert recorder.exploded() is None
    for _ in range(int(round(EXPLOSION_WINDOW_PS / 0.1))):
        recorder.time.append(recorder.time[-1] + 0.1)
        recorder.velocities_T.append(900.0)
    assert "kinetic temperature 900 K > 600 K (mean over the last 1 ps)" in recorder.exploded()
    recorder.velocities_T[-1] = float("nan")
    assert recorder.exploded() == "exploded: kinetic temperature nan"


QUICK = ["--lengths", "quick", "--no-progress", "--threads", "1", "--set", "nvt_ps=0.16", "--set", "npt_ps=0.16",
         "--set", "nve_ps=0.16", "--set", "stability_ps=0.32"]


def test_validate_run_and_summarize_quick(tmp_path, tiny_water_model, monkeypatch):
    validate = load_benchmark("validate")
    out, work = tmp_path / "validation", tmp_path / "work"
    common = ["--system", "water", "--out", str(out), "--work-dir", str(work)] + QUICK
    monkeypatch.setattr(target_module, "EXPLOSION_FACTOR", 1e6)  # the untrained model heats up; bookkeeping only
    assert validate.main(["run", str(tiny_water_model), "--name", "water-16fs", "--stability"] + common) == 0
    with pytest.raises(SystemExit, match="--overwrite"):
        validate.main(["run", str(tiny_water_model), "--name", "water-16fs"] + common)
    # a second model reuses the cached reference and times reference MD itself; it runs FlashMD at
    # another friction, so it is shown but not judged against the goals
    assert validate.main(["run", str(tiny_water_model), "--name", "second", "--no-stability",
                          "--collision-rate", "30"] + common) == 0

    result = json.loads((out / "water-16fs.json").read_text())
    assert result["system"] == "water" and result["stride_ps"] == pytest.approx(0.016)
    assert result["reference"]["computed_in_this_run"] is True
    assert {"machine", "torch", "openmm"} <= set(result["stack"])
    for key in ("filter", "no_filter"):
        run = result["nvt"][key]
        assert run["failed_at_ps"] is None, run["error"]
        for entry in run["temperature_K"].values():
            assert _finite(entry["mean"]) and _finite(entry["sem"]) and _finite(entry["dev_reference"])
        assert set(run["temperature_K"]) == {"all", "H", "O"}
        motion = run["molecule_temperature_K"]  # 64 waters: their translation and rotation, against 300 K
        assert set(motion) == {"translation", "rotation"}
        assert all(_finite(e["mean"]) and _finite(e["dev_target"]) and _finite(e["dev_reference"])
                   for e in motion.values())
    assert set(result["nvt"]["reference"]["molecule_temperature_K"]) == {"translation", "rotation"}
    filt = result["nvt"]["filter"]["filter"]
    assert filt["strides"] == 10 and 0.0 <= filt["clamped_fraction"] <= 1.0 and _finite(filt["mean_scale"])
    assert all(_finite(result["rdf"][pair]["difference_percent"]) for pair in ("O-O", "O-H"))
    npt = result["npt"]
    assert npt["flashmd"]["barostat_interval_strides"] == 1  # 25 x 0.5 fs rounds to one 16 fs stride
    assert _finite(npt["flashmd"]["density_g_cm3"]["mean"]) and _finite(npt["reference"]["density_g_cm3"]["mean"])
    assert _finite(npt["flashmd"]["relative_difference_percent"])
    for key in ("T_start_K", "T_end_K", "T_drift_K", "energy_drift_kjmol_per_ps_per_atom"):
        assert _finite(result["nve"][key]), key
    assert result["stability"]["ran"] and result["stability"]["length_ps"] == pytest.approx(0.32)
    assert isinstance(result["stability"]["stable"], bool)
    assert (result["stability"]["error"] is None) == result["stability"]["stable"]
    long_run = result["stability"]["temperature_K"]  # the continuation's: the long-run estimate of the NVT goals
    assert set(long_run) == {"all", "H", "O"} and all(_finite(e["dev_reference"]) for e in long_run.values())
    assert set(result["stability"]["molecule_temperature_K"]) == {"translation", "rotation"}
    assert result["stability"]["temperature_from_ps"] > 0
    cost = result["cost"]
    assert cost["reference_s_per_ps"] > 0 and cost["flashmd_s_per_ps"] > 0 and cost["speedup"] > 0
    for plot in result["plots"]:
        assert (out / plot).stat().st_size > 0
    assert {"water-16fs-temperature.png", "water-16fs-rdf.png", "water-16fs-nve.png"} <= set(result["plots"])
    assert (out / "reference-water.json").exists() and (out / "reference-water.npz").stat().st_size < 1_000_000
    assert (out / "water-16fs.npz").stat().st_size < 1_000_000
    assert list(work.rglob("*.npz")), "phases and trajectories go to the work dir"
    assert not list(work.rglob("*continuation*")), "the stability run's checkpoint goes once its phase is stored"

    second = json.loads((out / "second.json").read_text())
    assert second["reference"]["computed_in_this_run"] is False and not second["stability"]["ran"]
    assert second["collision_rate_per_ps"] == 30.0 and result["collision_rate_per_ps"] == 1.0
    assert "timed in this run" in second["cost"]["reference_source"] and second["cost"]["reference_s_per_ps"] > 0

    # a run hotter than EXPLOSION_FACTOR x the target stops there and is reported as failed
    monkeypatch.setattr(target_module, "EXPLOSION_FACTOR", 0.01)
    assert validate.main(["run", str(tiny_water_model), "--name", "exploding", "--no-stability"] + common) == 0
    exploding = json.loads((out / "exploding.json").read_text())
    for run in (exploding["nvt"]["filter"], exploding["nve"]):
        assert run["failed_at_ps"] is not None and run["error"].startswith("exploded: kinetic temperature")
    (out / "exploding.json").unlink()

    # more NpT runs (other seeds) pool into the densities; every model is compared with the pool again
    monkeypatch.setattr(target_module, "EXPLOSION_FACTOR", 1e6)
    more = ["--ps", "0.16", "--seed", "1", "--out", str(out), "--threads", "1", "--no-progress"]
    assert validate.main(["npt", "reference", "--system", "water"] + more) == 0
    assert validate.main(["npt", "water-16fs"] + more) == 0
    with pytest.raises(SystemExit, match="already has a run with seed 1"):
        validate.main(["npt", "water-16fs"] + more)
    reference_npt = json.loads((out / "reference-water.json").read_text())["npt"]
    assert [r["seed"] for r in reference_npt["runs"]] == [0, 1]
    assert reference_npt["pooled_length_ps"] == pytest.approx(reference_npt["length_ps"] + 0.16)
    pooled = json.loads((out / "water-16fs.json").read_text())["npt"]
    runs = pooled["flashmd"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and runs[0]["density_g_cm3"] == npt["flashmd"]["density_g_cm3"]
    mean = (0.16 * runs[0]["density_g_cm3"]["mean"] + 0.16 * runs[1]["density_g_cm3"]["mean"]) / 0.32
    assert pooled["flashmd"]["density_g_cm3"]["mean"] == pytest.approx(mean)
    ref_mean = reference_npt["density_g_cm3"]["mean"]
    assert pooled["reference"]["density_g_cm3"]["mean"] == ref_mean
    assert pooled["flashmd"]["relative_difference_percent"] == pytest.approx(100 * (mean - ref_mean) / ref_mean)
    second_npt = json.loads((out / "second.json").read_text())["npt"]  # compared with the pooled reference too
    assert second_npt["reference"]["density_g_cm3"]["mean"] == ref_mean and "runs" not in second_npt["flashmd"]
    assert "npt_density_seed1" in np.load(out / "water-16fs.npz").files

    before = json.loads((out / "water-16fs.json").read_text())
    assert validate.main(["nvt", "reference", "--system", "water"] + more) == 0
    reference = json.loads((out / "reference-water.json").read_text())
    ref_runs = reference["nvt"]["runs"]
    assert [r["seed"] for r in ref_runs] == [0, 1] and ref_runs[1]["length_ps"] == pytest.approx(0.16)
    weights = [r["length_ps"] for r in ref_runs]
    for name, entry in reference["nvt"]["temperature_K"].items():
        assert entry["mean"] == pytest.approx(np.average([r["temperature_K"][name]["mean"] for r in ref_runs],
                                                         weights=weights))
    ref_arrays = dict(np.load(out / "reference-water.npz"))
    frames = [r["rdf_frames"] for r in ref_runs]
    assert np.allclose(ref_arrays["rdf_O-O"], np.average([ref_arrays["rdf_O-O_seed0"], ref_arrays["rdf_O-O_seed1"]],
                                                         axis=0, weights=frames), atol=1e-5)
    after = json.loads((out / "water-16fs.json").read_text())
    for name, entry in after["nvt"]["filter"]["temperature_K"].items():
        assert entry["mean"] == before["nvt"]["filter"]["temperature_K"][name]["mean"]
        assert entry["dev_reference"] == pytest.approx(entry["mean"] - reference["nvt"]["temperature_K"][name]["mean"])
    from openmm_flashmd.analysis.structure import rdf_difference

    model_rdf = np.load(out / "water-16fs.npz")["rdf_O-O"]
    assert after["rdf"]["O-O"]["difference_percent"] == pytest.approx(
        100 * rdf_difference(ref_arrays["rdf_r"], model_rdf, ref_arrays["rdf_O-O"]), rel=1e-5)
    assert after["npt"] == before["npt"], "an NVT run leaves the densities alone"
    with pytest.raises(SystemExit, match="already has a run with seed 1"):
        validate.main(["nvt", "reference", "--system", "water"] + more)

    # another filtered NVT run of the model: its temperatures and RDFs pool with the first run's
    assert validate.main(["nvt", "water-16fs"] + more) == 0
    pooled_nvt = json.loads((out / "water-16fs.json").read_text())
    model_runs = pooled_nvt["nvt"]["filter"]["runs"]
    assert [r["seed"] for r in model_runs] == [0, 1] and all(r["rdf_frames"] > 0 for r in model_runs)
    assert pooled_nvt["rdf"]["O-O"]["frames"] == sum(r["rdf_frames"] for r in model_runs)
    model_arrays = dict(np.load(out / "water-16fs.npz"))
    assert np.allclose(model_arrays["rdf_O-O"], np.average(
        [model_arrays["rdf_O-O_seed0"], model_arrays["rdf_O-O_seed1"]], axis=0,
        weights=[r["rdf_frames"] for r in model_runs]), atol=1e-5)
    assert np.array_equal(model_arrays["rdf_O-O_seed0"], model_rdf), "the first run's curve is kept"
    assert pooled_nvt["rdf"]["O-O"]["difference_percent"] == pytest.approx(
        100 * rdf_difference(ref_arrays["rdf_r"], model_arrays["rdf_O-O"], ref_arrays["rdf_O-O"]), rel=1e-5)
    for name, entry in pooled_nvt["nvt"]["filter"]["temperature_K"].items():
        assert entry["mean"] == pytest.approx(np.average([r["temperature_K"][name]["mean"] for r in model_runs],
                                                         weights=[r["length_ps"] for r in model_runs]))
        assert entry["dev_reference"] == pytest.approx(entry["mean"] - reference["nvt"]["temperature_K"][name]["mean"])
    assert pooled_nvt["stability"] == after["stability"] and pooled_nvt["npt"] == after["npt"]
    assert model_runs[0]["rdf_difference_percent"]["O-O"] == pytest.approx(  # each run alone, too
        100 * rdf_difference(ref_arrays["rdf_r"], model_arrays["rdf_O-O_seed0"], ref_arrays["rdf_O-O"]), rel=1e-5)
    assert validate.main(["compare", "--system", "water", "--out", str(out)]) == 0
    assert json.loads((out / "water-16fs.json").read_text()) == pooled_nvt, "comparing again changes nothing"
    from openmm_flashmd.validation.report import card_rows

    rows = dict((quantity, value) for quantity, value in card_rows(pooled_nvt))
    strides = sum(r["fallback"]["strides"] for r in model_runs)
    assert f"NVT 300 K with filter (O F E O), {pooled_nvt['nvt']['filter']['pooled_length_ps']:g} ps in 2 runs: T (K)" in rows
    assert any(f"of {strides} strides" in value for value in rows.values())
    assert "(2 runs, 0.32 ps)" in rows["NpT 1 bar density (g/cm³): FlashMD / reference"]

    assert validate.main(["summarize", "--out", str(out)]) == 0
    merged = json.loads((tmp_path / "validation.json").read_text())
    assert merged["benchmark"] == "validation" and set(merged["models"]) == {"water-16fs", "second"}
    goals = {(g["goal"], g["model"]): g for g in merged["goals"]}
    overall = goals[("water_T_overall", "water-16fs")]
    assert overall["status"] in ("met", "not met", "not resolved") and _finite(overall["value"])
    assert "of the stability run" in overall["note"]  # the long run's temperatures judge the goals
    assert goals[("stability", "water-16fs")]["value"] == pytest.approx(0.32)
    assert goals[("alanine_js", None)]["met"] is None
    assert ("nve", "water-16fs") in goals and not any(model == "second" for _, model in goals)
    assert "quick lengths" in goals[("water_rdf", "water-16fs")]["note"]
    summary = (out / "summary.md").read_text()
    assert "## Goals" in summary and "![water-16fs-rdf.png](water-16fs-rdf.png)" in summary

    report = load_benchmark("report")
    markdown = "\n".join(report.render_validation(merged, "validation.json"))
    assert "| water-16fs | 16 | quick |" in markdown and "Measured on" in markdown
    assert "| second (FlashMD friction 30/ps) | 16 | quick |" in markdown


def test_reference_cache_with_other_settings_is_refused(tmp_path, tiny_water_model, monkeypatch):
    validate = load_benchmark("validate")
    out = tmp_path / "validation"
    out.mkdir()
    (out / "reference-water.json").write_text(json.dumps({"settings": {"other": 1}}))
    (out / "reference-water.npz").write_bytes(b"")
    with pytest.raises(SystemExit, match="other settings"):
        validate.main(["run", str(tiny_water_model), "--system", "water", "--out", str(out),
                       "--work-dir", str(tmp_path / "work")] + QUICK)
    assert validate.system_from_model_name("alanine-dipeptide-implicit-8fs") == "alanine-dipeptide-implicit"
    assert validate.system_from_model_name("model") is None


def test_friction_scan_quick(tmp_path, tiny_water_model, monkeypatch):
    """The friction scan's bookkeeping: one row per friction with per-element temperatures
    against the reference, filter counts, RDF, and O diffusion of FlashMD and reference MD
    (stronger friction slows reference MD's diffusion)."""
    validate = load_benchmark("validate")
    monkeypatch.setattr(target_module, "EXPLOSION_FACTOR", 1e6)
    model = tmp_path / "water-16fs.pt"  # the file name tells the system
    model.write_bytes(Path(tiny_water_model).read_bytes())
    args = ["friction", str(model), "--rates", "100", "1", "--out", str(tmp_path),
            "--lengths", "quick", "--no-progress", "--threads", "1", "--set", "nvt_ps=0.8",
            "--set", "sample_ps=0.048"]  # 3 strides per sample: the last sample comes after 2
    assert validate.main(args) == 0
    with pytest.raises(SystemExit, match="--overwrite"):
        validate.main(args)
    result = json.loads((tmp_path / "friction-water-16fs.json").read_text())
    assert result["benchmark"] == "friction_scan" and result["system"] == "water"
    assert [row["collision_rate_per_ps"] for row in result["rates"]] == [1.0, 100.0]
    for row in result["rates"]:
        run = row["flashmd"]
        assert run["failed_at_ps"] is None, run["error"]
        assert set(run["temperature_K"]) == {"all", "H", "O"}
        assert all(_finite(v["dev_reference"]) for v in run["temperature_K"].values())
        assert run["filter"]["strides"] == 50
        assert _finite(run["rdf"]["O-O"]["difference_percent"])
        assert run["diffusion_O_nm2_per_ps"] > 0 and row["reference"]["diffusion_O_nm2_per_ps"] > 0
    slow, fast = (row["reference"]["diffusion_O_nm2_per_ps"] for row in result["rates"][::-1])
    assert slow < fast
    assert (tmp_path / result["plot"]).exists()
    report = load_benchmark("report")
    assert "friction" in "\n".join(report.RENDERERS["friction_scan"](result, "friction-water-16fs.json"))


def test_molecule_motion_benchmark_quick(tmp_path):
    """benchmarks/molecule_motion.py in quick mode: reference MD and a bundled model, each run's
    molecules' translational and rotational temperatures adding up to its kinetic temperature
    (64 rigid waters: 192 translational and 192 rotational degrees of freedom, 384 in all)."""
    bench = load_benchmark("molecule_motion")
    out = tmp_path / "motion.json"
    args = ["--models", "water-rigid-16fs", "--seeds", "1", "--lengths", "quick", "--out", str(out), "--no-progress"]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert [r["model"] for r in result["runs"]] == ["reference MD", "water-rigid-16fs"]
    for run, tolerance in zip(result["runs"], (3e-3, 1e-6)):  # reference MD's velocities are constrained to 1e-5
        assert run["failed_at_ps"] is None and run["completed_ps"] == pytest.approx(0.384)
        motion = run["molecule_temperature_K"]
        total = 192 * (motion["translation"]["mean"] + motion["rotation"]["mean"])
        assert total == pytest.approx(384 * run["temperature_K"]["all"]["mean"], rel=tolerance)
    assert result["runs"][1]["fallback"]["strides"] > 0
    with pytest.raises(SystemExit, match="overwrite"):
        bench.main(args)
    report = load_benchmark("report")
    assert "| water-rigid-16fs | 1 |" in "\n".join(report.RENDERERS["molecule_motion"](result, "motion.json"))


@pytest.mark.slow
def test_blog_nve_protocol_quick(tmp_path):
    """benchmarks/blog_nve.py in quick mode with the exact Verlet-guess stride (about two minutes):
    one start, then a second one added by another call, judged on their mean."""
    from openmm_flashmd.model import VerletGuessStrideModel

    blog = load_benchmark("blog_nve")
    model = save_model(VerletGuessStrideModel(0.002, 1), tmp_path / "guess-2fs.pt")
    out = tmp_path / "blog.json"
    args = [str(model), "--lengths", "quick", "--out", str(out), "--plots", str(tmp_path), "--no-progress"]
    assert blog.main(args) == 0
    result = json.loads(out.read_text())["models"]["guess-2fs"]
    assert result["n_atoms"] == 3 * 258 and result["lengths_mode"] == "quick"
    flashmd, reference = result["starts"][0]["runs"].values()
    assert reference["failed_at_ps"] is None and abs(reference["energy_drift_kjmol_per_ps"]) < 50
    assert flashmd["completed_ps"] == pytest.approx(0.4)
    with pytest.raises(SystemExit, match="overwrite"):
        blog.main(args)
    with pytest.raises(SystemExit, match="would mix or repeat"):
        blog.main(args[:1] + ["--lengths", "full"] + args[3:] + ["--first-start", "1"])
    assert blog.main(args + ["--first-start", "1"]) == 0
    result = json.loads(out.read_text())["models"]["guess-2fs"]
    assert [s["index"] for s in result["starts"]] == [0, 1]
    assert result["starts"][0]["velocity_seed"] != result["starts"][1]["velocity_seed"]
    drifts = [s["runs"]["FlashMD (F, no filter)"]["T_drift_K"] for s in result["starts"]]
    summary = result["summary"]["FlashMD (F, no filter)"]["T_drift_K"]
    assert summary["n"] == 2 and summary["mean"] == pytest.approx(np.mean(drifts))
    assert (tmp_path / "guess-2fs.png").exists() and (tmp_path / "guess-2fs-start1.png").exists()


def test_blog_goals_are_judged_on_the_mean_over_starts():
    """ΔT of several starts: the goal row carries their mean and standard error, so a mean within
    10 K by less than two errors is not resolved, and any mean beyond it is not met."""
    blog = load_benchmark("blog_nve")
    validate = load_benchmark("validate")

    def entry(drifts, shares=None):
        starts = [{"index": k, "runs": {
            "FlashMD (F, no filter)": {"T_start_K": 300.0, "T_end_K": 300.0 + d, "T_drift_K": d,
                                       "energy_drift_kjmol_per_ps": 0.5, "failed_at_ps": None,
                                       "fallback": {"fallback_fraction": (shares or [0.0] * len(drifts))[k]}},
            "reference MD (velocity Verlet)": {"T_start_K": 300.0, "T_end_K": 300.0, "T_drift_K": 0.0,
                                               "energy_drift_kjmol_per_ps": 0.0,
                                               "failed_at_ps": None}}} for k, d in enumerate(drifts)]
        summary = blog.summarize(starts)
        return {"lengths_mode": "full", "summary": summary, "starts": starts, "goals_met": blog.goals_met(summary)}

    models = {"one": entry([4.0]), "tight": entry([3.0, 4.0, 5.0]), "loose": entry([-6.0, 20.0, 10.0]),
              "hot": entry([9.0, 15.0]), "fallback": entry([1.0, 2.0], shares=[0.5, 0.3])}
    rows = {row["model"]: row for row in validate.blog_goals({"models": models}) if row["goal"] == "blog_T"}
    assert rows["one"]["status"] == "met" and rows["one"]["error"] is None
    assert rows["tight"]["status"] == "met" and rows["tight"]["value"] == pytest.approx(4.0)
    assert rows["loose"]["status"] == "not resolved" and "over 3 starts" in rows["loose"]["note"]
    assert rows["hot"]["status"] == "not met" and rows["hot"]["value"] == pytest.approx(12.0)
    assert models["hot"]["goals_met"] is False and models["tight"]["goals_met"] is True
    assert rows["fallback"]["met"] is False and "fallback" in rows["fallback"]["note"]
    report = load_benchmark("report")
    table = "\n".join(report.RENDERERS["blog_nve"](
        {"models": {k: dict(v, stride_ps=0.016, stack={}) for k, v in models.items()}}, "blog.json"))
    assert "| hot | 16 | full | mean of 2 | FlashMD (F, no filter) | | +12.0 ± 3 | 0.5 ± 0 | 0% | **not met** |" in table
    assert "| one | 16 | full | 0 | FlashMD (F, no filter) | 300.0 → 304.0 | +4.0 | 0.5 | 0% | met |" in table
    assert "| one | 16 | full | mean of" not in table


def test_a_goal_met_only_by_fallback_md_is_not_met():
    """The goals judge the stride model: an NVE run whose T holds because half its strides ran as
    MD is reported as not met, with the share; the same run without fallback strides meets it."""
    validate = load_benchmark("validate")

    def model(share):
        return {"system": "water-rigid", "stride_ps": 0.016, "lengths_mode": "full",
                "nve": {"T_drift_K": 0.5, "completed_ps": 50.0, "failed_at_ps": None,
                        "fallback": {"fallback_fraction": share}}}

    rows = {row["model"]: row for row in validate.evaluate_goals({"kept": model(0.5), "model": model(0.0)})
            if row["goal"] == "nve"}
    assert rows["model"]["met"] is True and "fallback" not in rows["model"]["note"]
    assert rows["kept"]["met"] is False and "met only by fallback MD (50% of strides)" in rows["kept"]["note"]
    # one rule and one limit for the validation goals, the blog table and simulate's trust check
    from openmm_flashmd.analysis.report import MAX_FALLBACK_FRACTION
    common = load_benchmark("_common")
    assert common.MAX_FALLBACK_FRACTION == MAX_FALLBACK_FRACTION
    assert common.met_only_by_fallback(MAX_FALLBACK_FRACTION) is None and common.met_only_by_fallback(None) is None


def _temperatures(dev_all, sem_all, elements):
    """A run's ``temperature_K`` summary: overall deviation from 300 K, elements' from reference MD."""
    out = {"all": {"mean": 300.0 + dev_all, "sem": sem_all, "dev_target": dev_all}}
    for name, (dev, sem) in elements.items():
        out[name] = {"mean": 0.0, "sem": sem, "dev_target": 0.0, "dev_reference": dev, "dev_reference_sem": sem}
    return out


def test_goals_are_met_only_where_the_runs_resolve_them():
    """A goal is not met beyond its threshold however noisy the value, met only within it by two
    standard errors, otherwise not resolved; the stability run's temperatures judge the temperature
    goals when it recorded them."""
    validate = load_benchmark("validate")
    assert validate.goal_status([(1.0, 0.4)], 2.0) == "met"
    assert validate.goal_status([(1.0, 0.6)], 2.0) == "not resolved"
    assert validate.goal_status([(2.5, 10.0)], 2.0) == "not met"
    assert validate.goal_status([(1.0, None), (9.0, 0.4)], 10.0) == "met"
    assert validate.goal_status([(1000.0, None)], 1000.0, at_least=True) == "met"
    assert validate.goal_status([(900.0, None)], 1000.0, at_least=True) == "not met"

    def model(stability_temperatures):
        stability = {"ran": True, "stable": True, "length_ps": 1000.0, "failed_at_ps": None,
                     "temperature_from_ps": 52.0}
        if stability_temperatures:
            stability["temperature_K"] = _temperatures(0.3, 0.3, {"H": (4.0, 0.5), "O": (-3.0, 0.8)})
        return {"system": "water-rigid", "stride_ps": 0.016, "lengths_mode": "full", "lengths": {"nvt_ps": 50.0},
                "nvt": {"filter": {"failed_at_ps": None,
                                   "temperature_K": _temperatures(5.8, 2.8, {"H": (6.5, 2.1), "O": (-0.4, 3.7)})}},
                "stability": stability}

    for with_long_run, expected in ((False, {"water_T_overall": ("not met", 5.8), "water_T_elements": ("not resolved", 6.5)}),
                                    (True, {"water_T_overall": ("met", 0.3), "water_T_elements": ("met", 4.0)})):
        rows = {row["goal"]: row for row in validate.evaluate_goals({"m": model(with_long_run)})
                if row["model"] == "m"}
        for key, (status, value) in expected.items():
            assert (rows[key]["status"], rows[key]["value"]) == (status, pytest.approx(value)), (with_long_run, key)
        assert ("948 ps of the stability run" if with_long_run else "50 ps NVT run") in rows["water_T_overall"]["note"]
        assert rows["water_T_overall"]["aim_status"] == ("not resolved" if with_long_run else "not met")
        assert rows["stability"]["status"] == "met" and rows["stability"]["aim_status"] == "not met"
    common = load_benchmark("_common")
    from openmm_flashmd.analysis.report import TEMPERATURE_CONFIDENCE
    assert common.GOAL_CONFIDENCE == TEMPERATURE_CONFIDENCE
    assert common.goal_cells(rows["water_T_overall"]) == ["0.3 ± 0.3", "2: met", "0.5: not resolved"]


def test_validation_checks_judge_temperatures_only_where_the_runs_resolve_them():
    """validate's temperature checks follow simulate's report: beyond 5 K fails, within it passes
    only with standard errors within 2.5 K, else not judged; the stability run's temperatures get
    their own checks."""
    from openmm_flashmd.validation.checks import status, verdict_lines, verdicts

    result = {"temperature_K": 300.0,
              "nvt": {"filter": {"length_ps": 50.0, "failed_at_ps": None,
                                 "temperature_K": _temperatures(1.0, 2.8, {"H": (4.0, 2.0), "O": (-7.0, 3.7)})}},
              "stability": {"ran": True, "stable": True, "length_ps": 1000.0, "temperature_from_ps": 52.0,
                            "temperature_K": _temperatures(1.2, 0.3, {"H": (4.0, 0.5), "O": (-3.0, 0.8)})}}
    checks = {c["check"]: c for c in verdicts(result)}
    assert status(checks["temperature"]) == "not judged" and checks["temperature"]["text"].startswith("not judged")
    assert "+1.0 ± 2.8 K" in checks["temperature"]["text"]
    assert status(checks["temperature_by_element"]) == "failed"  # O -7 K: beyond 5 K, however noisy
    assert status(checks["stability_temperature"]) == "passed"
    assert status(checks["stability_temperature_by_element"]) == "passed"
    assert "from 52 to 1000 ps" in checks["stability_temperature"]["text"]
    assert any(line.startswith("- ⚠️ not judged") for line in verdict_lines(list(checks.values())))
    # the molecules' translation and rotation are judged against the thermostat's temperature
    result["stability"]["molecule_temperature_K"] = {"translation": {"mean": 278.7, "sem": 2.0, "dev_target": -21.3},
                                                     "rotation": {"mean": 319.9, "sem": 2.4, "dev_target": 19.9}}
    result["nvt"]["filter"]["molecule_temperature_K"] = {"translation": {"mean": 299.0, "sem": 0.5, "dev_target": -1.0},
                                                        "rotation": {"mean": 301.5, "sem": 0.6, "dev_target": 1.5}}
    checks = {c["check"]: c for c in verdicts(result)}
    assert status(checks["stability_temperature_by_motion"]) == "failed"
    assert "translation -21.3 ± 2.0 K, rotation +19.9 ± 2.4 K" in checks["stability_temperature_by_motion"]["text"]
    assert status(checks["temperature_by_motion"]) == "passed"


def test_the_goal_table_has_the_blog_and_default_report_rows():
    """Issue 15's rows measured by other benchmarks: the blog protocol (a goal kept only by fallback
    MD is not met) and the default simulate report (every run must pass every check)."""
    validate = load_benchmark("validate")
    blog_nve = load_benchmark("blog_nve")

    def blog(share):
        flashmd = {"T_drift_K": -1.5, "energy_drift_kjmol_per_ps": 0.3, "failed_at_ps": None,
                   "fallback": {"fallback_fraction": share}}
        reference = {"T_drift_K": 6.1, "energy_drift_kjmol_per_ps": 0.01, "failed_at_ps": None}
        starts = [{"index": 0, "runs": {"FlashMD (F, no filter)": flashmd, "reference MD (velocity Verlet)": reference}}]
        return {"lengths_mode": "full", "summary": blog_nve.summarize(starts), "starts": starts}

    rows = validate.blog_goals({"models": {"clean": blog(0.0), "kept": blog(0.3)}})
    by = {(r["goal"], r["model"]): r for r in rows}
    assert (by[("blog_T", "clean")]["status"], by[("blog_T", "clean")]["aim_status"]) == ("met", "met")
    assert by[("blog_T", "clean")]["value"] == pytest.approx(1.5) and "reference MD +6.1" in by[("blog_T", "clean")]["note"]
    assert by[("blog_drift", "kept")]["status"] == "not met" and "met only by fallback MD (30% of strides)" in by[
        ("blog_drift", "kept")]["note"]

    def run(verdict, others=()):
        return {"verdict": verdict, "other_failed_checks": list(others)}

    power = {"model": "m", "lengths": [{"time_ps": 10.0, "runs": [run("passed"), run("passed", ["rdf"]), run("not_judged")]},
                                       {"time_ps": 100.0, "runs": [run("passed")]}]}
    (row,) = validate.default_report_goal(power, 10.0)
    assert row["status"] == "not met" and row["value"] == pytest.approx(1 / 3)
    assert row["note"] == "1 of 3 runs of 10 ps passed every check (temperature: 2 passed, 1 not judged)"
    assert validate.default_report_goal(power, 100.0)[0]["status"] == "met"
    assert validate.default_report_goal(power, 20.0) == []
    reference = {"lengths": [{"time_ps": 10.0, "runs": [run("failed"), run("failed"), run("not_judged")]}]}
    assert validate.default_report_goal(power, 10.0, reference)[0]["note"].endswith(
        "; reference MD's 3 runs of that length in the same temperature check: 2 failed, 1 not judged")
    assert validate.default_report_goal(power, 100.0, reference)[0]["note"] == "1 of 1 runs of 100 ps passed every check (temperature: 1 passed)"


def test_an_interrupted_stability_run_resumes_bit_for_bit(tmp_path, tiny_water_model, monkeypatch):
    """The stability continuation checkpoints itself; killed after two of its pieces and started
    again, it goes on from the second checkpoint to the same temperatures, speeds and monitor
    counts as the run that was never stopped (the Langevin noise included). On the Reference
    platform: two uninterrupted runs on the CPU platform already differ in the last bits."""
    import openmm

    from openmm_flashmd import load_model
    from openmm_flashmd.validation import runs
    from openmm_flashmd.validation.protocol import protocol_lengths
    from openmm_flashmd.validation.sampling import State

    monkeypatch.setattr(target_module, "EXPLOSION_FACTOR", 1e6)  # the untrained model heats up
    target = target_module.Target.builtin("water", threads=1, progress=False)
    target.platform, target.properties = openmm.Platform.getPlatformByName("Reference"), {}
    lengths = protocol_lengths(target, "quick", {"settle_ps": 0.032, "nvt_ps": 0.064})
    masses = np.asarray(target.masses)
    velocities = np.random.default_rng(1).normal(size=(len(masses), 3)) * np.sqrt(2.494 / masses)[:, None]
    start = State(np.asarray(target.positions), velocities, np.asarray(target.box))
    model = load_model(tiny_water_model)

    def nvt(checkpoint):
        return runs.flashmd_nvt(target, model, "O F E O", start, lengths, 0.016, {}, True, 0.4,
                                checkpoint=checkpoint, checkpoint_ps=0.048)

    straight, straight_series = nvt(None)
    path = tmp_path / "continuation.npz"
    advance, pieces = runs.advance, []

    def killed_in_the_third_piece(*args, **kwargs):
        if "stability" in args[5]:
            pieces.append(kwargs["t0"])
            if len(pieces) == 3:
                raise KeyboardInterrupt
        return advance(*args, **kwargs)

    monkeypatch.setattr(runs, "advance", killed_in_the_third_piece)
    with pytest.raises(KeyboardInterrupt):
        nvt(path)
    monkeypatch.setattr(runs, "advance", advance)
    resumed, resumed_series = nvt(path)

    assert resumed["stability"]["resumed_at_ps"] == [pytest.approx(pieces[2])]
    assert pieces[2] == pytest.approx(pieces[0] + 6 * 0.016)  # pieces of 3 strides: 0.048 ps
    assert not straight["stability"]["resumed_at_ps"]
    for key in ("temperature_K", "molecule_temperature_K", "T_min_K", "T_max_K", "max_speed_nm_per_ps", "fallback",
                "stable"):
        assert resumed["stability"][key] == straight["stability"][key], key
    assert resumed["temperature_K"] == straight["temperature_K"] and resumed["filter"] == straight["filter"]
    assert set(resumed_series) == set(straight_series)
    for key, values in straight_series.items():
        assert np.array_equal(resumed_series[key], values), key
    assert len(straight_series["stability_T_all"]) == 19  # (0.4 - 0.032 - 0.064) ps / 16 fs, one sample per stride

    path.write_bytes(b"not a checkpoint")
    with pytest.raises(target_module.ValidationError, match="cannot resume from .*continuation.npz: unreadable"):
        nvt(path)


def test_a_resumed_validation_runs_again_only_the_phase_whose_lengths_changed(tmp_path):
    """A longer NpT run (say, to resolve a density) on resume: the ``npt`` phase runs again with
    the new length, the finished NVT phases are read back; any other change is refused in one
    line, before anything is touched."""

    from openmm_flashmd.validation.protocol import _Phases

    settings = {"model_sha256": "abc", "stability": True, "lengths": {"nvt_ps": 50.0, "npt_ps": 50.0}}
    ran = []

    def work(name):
        def run():
            ran.append(name)
            return {"phase": name}, {"x": np.zeros(2)}
        return run

    first = _Phases(tmp_path, settings, resume=False)
    for name in ("nvt_filter", "npt"):
        first.run(name, work(name))
    longer = dict(settings, lengths={"nvt_ps": 50.0, "npt_ps": 400.0})
    for refused, text in ((dict(longer, lengths={"nvt_ps": 60.0, "npt_ps": 400.0}), r"\(lengths.nvt_ps\)"),
                          (dict(longer, model_sha256="other"), r"\(model_sha256\)")):
        with pytest.raises(target_module.ValidationError, match="cannot resume: .*" + text):
            _Phases(tmp_path, refused, resume=True)
        assert (tmp_path / "npt.json").exists()
    ran.clear()
    again = _Phases(tmp_path, longer, resume=True)
    assert again.rerun == ["npt"]
    assert again.run("nvt_filter", work("nvt_filter"))[0] == {"phase": "nvt_filter"}
    again.run("npt", work("npt"))
    assert ran == ["npt"] and again.reused == ["nvt_filter"]
    assert json.loads((tmp_path / "settings.json").read_text())["lengths"]["npt_ps"] == 400.0
    assert _Phases(tmp_path, longer, resume=True).rerun == []


def test_nve_box_size_benchmark_quick(tmp_path):
    """benchmarks/nve_box_size.py in quick mode, in two box sizes with one cutoff: reference MD keeps the energy;
    the Verlet-guess stride (the start forces held over the stride, x + tv + t^2 F/2m and
    v + tF/m) gains energy at every stride, about half the Hessian's quadratic form in the
    displacement (positive on average), and the summary counts it."""
    from openmm_flashmd.model import VerletGuessStrideModel

    bench = load_benchmark("nve_box_size")
    model = save_model(VerletGuessStrideModel(0.002, 1), tmp_path / "guess-2fs.pt")
    out = tmp_path / "nve.json"
    args = ["--models", str(model), "--sizes", "27", "32", "--seeds", "1", "--cutoff", "0.4", "--lengths", "quick",
            "--out", str(out), "--no-progress"]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert result["cutoff_nm"] == {"27": 0.4, "32": 0.4}
    assert [(r["model"], r["waters"]) for r in result["runs"]] == [
        ("reference MD", 27), ("guess-2fs", 27), ("reference MD", 32), ("guess-2fs", 32)]
    for run in result["runs"]:
        assert run["failed_at_ps"] is None and run["completed_ps"] == pytest.approx(0.096)
    reference, guess = result["runs"][0::2], result["runs"][1::2]
    assert all(r["energy_change_per_water_kjmol"] > 0.5 for r in guess), guess
    # reference MD keeps the energy to a tenth of what the guess gains in the same box (at this short cutoff its
    # 0.1 ps change scatters between runs by about +-0.15 kJ/mol per water: the starts are not bit-reproducible
    # on the CPU platform, and pairs crossing a 0.4 nm cutoff without switching jolt the energy)
    assert all(abs(r["energy_change_per_water_kjmol"]) < 0.1 * g["energy_change_per_water_kjmol"]
               for r, g in zip(reference, guess)), (reference, guess)
    summary = result["energy_change_per_water_kjmol"]["guess-2fs"]
    assert summary["27"]["runs"] == summary["32"]["runs"] == summary["27"]["positive"] == 1
    with pytest.raises(SystemExit, match="overwrite"):
        bench.main(args)
    table = "\n".join(load_benchmark("report").RENDERERS["nve_box_size"](result, "nve.json"))
    assert "| run | 27 waters | 32 waters |" in table and "| guess-2fs | +" in table and "no rotation" not in table
    assert "cutoff 0.40 nm at every size" in table


def test_nve_box_size_without_the_random_rotation_leaves_an_equivariant_stride_alone(tmp_path):
    """--random-rotation on off runs each model from the same starts with and without the
    per-stride rotation: the Verlet-guess stride is exactly equivariant, so both gain the same energy."""
    from openmm_flashmd.model import VerletGuessStrideModel

    bench = load_benchmark("nve_box_size")
    model = save_model(VerletGuessStrideModel(0.002, 1), tmp_path / "guess-2fs.pt")
    out = tmp_path / "nve.json"
    assert bench.main(["--models", str(model), "--sizes", "27", "--seeds", "1", "--lengths", "quick",
                       "--random-rotation", "on", "off", "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    runs = {r["model"]: r["energy_change_per_water_kjmol"] for r in result["runs"]}
    assert list(runs) == ["reference MD", "guess-2fs", "guess-2fs (no rotation)"]
    assert runs["guess-2fs"] > 0.5 and runs["guess-2fs (no rotation)"] == pytest.approx(runs["guess-2fs"], abs=1e-3)
    table = "\n".join(load_benchmark("report").RENDERERS["nve_box_size"](result, "nve.json"))
    assert "| guess-2fs (no rotation) | +" in table and "without the integrator's per-stride random rotation" in table


def test_the_alanine_goal_notes_what_exact_dynamics_reads_on_its_comparison(tmp_path):
    validate = load_benchmark("validate")
    goals = [{"goal": "alanine_js", "note": "reference half vs half: 0.0373"}, {"goal": "nve", "note": ""}]
    assert validate.add_exact_dynamics_notes(goals, tmp_path) == goals  # no windows benchmark: unchanged
    (tmp_path / "ramachandran_windows.json").write_text(json.dumps(
        {"window_ns": 1.0, "exact_dynamics": {"windows": 6, "mean": 0.0139, "min": 0.0093, "max": 0.0319}}))
    alanine, nve = validate.add_exact_dynamics_notes(goals, tmp_path)
    assert alanine["note"] == ("reference half vs half: 0.0373; exact dynamics, 6 windows of 1 ns on the same "
                               "comparison: mean 0.014 (0.009–0.032; ramachandran_windows.json)")
    assert nve["note"] == ""


def test_npt_runs_pool_by_length_and_refuse_a_repeated_seed():
    from openmm_flashmd.validation.pooling import pool_npt_run, compare_densities, pooled_mean_sem
    from openmm_flashmd.validation.target import ValidationError

    first = {"length_ps": 400.0, "completed_ps": 400.0, "failed_at_ps": None,
             "density_g_cm3": {"mean": 0.97, "sem": 0.004}}
    entry = pool_npt_run(first, {"length_ps": 800.0, "completed_ps": 800.0, "failed_at_ps": None,
                                "density_g_cm3": {"mean": 1.00, "sem": 0.002}}, seed=1)
    assert entry["density_g_cm3"]["mean"] == pytest.approx((400 * 0.97 + 800 * 1.00) / 1200)
    assert entry["density_g_cm3"]["sem"] == pytest.approx(math.hypot(0.004 / 3, 0.002 * 2 / 3))
    assert first.get("runs") is None, "the entry given is left alone"
    # a failed run is recorded but not pooled
    failed = pool_npt_run(entry, {"length_ps": 800.0, "completed_ps": 3.0, "failed_at_ps": 3.0,
                                 "density_g_cm3": {"mean": 0.5, "sem": None}}, seed=2)
    assert [r["seed"] for r in failed["runs"]] == [0, 1, 2] and failed["density_g_cm3"] == entry["density_g_cm3"]
    with pytest.raises(ValidationError, match="seed 1"):
        pool_npt_run(entry, first, seed=1)
    assert math.isnan(pooled_mean_sem([{"length_ps": 1.0, "density_g_cm3": {"mean": 1.0, "sem": None}}])["sem"])

    compared = compare_densities({"flashmd": entry, "reference": {"density_g_cm3": {"mean": 0.5, "sem": 0.1}}},
                                 {"density_g_cm3": {"mean": 1.0, "sem": 0.001}})
    assert compared["flashmd"]["relative_difference_percent"] == pytest.approx(100 * (entry["density_g_cm3"]["mean"] - 1))
    assert compared["flashmd"]["relative_difference_sem_percent"] == pytest.approx(
        100 * math.hypot(entry["density_g_cm3"]["sem"], 0.001))


def test_the_committed_water_results_agree_with_their_reference():
    """Comparing a committed rigid-water result again with the committed reference (pooled or not)
    reproduces what the result records: the pooled runs and the comparisons were written together."""
    from openmm_flashmd.validation.pooling import compare_result
    from openmm_flashmd.validation.records import read_arrays

    folder = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "validation"
    reference = json.loads((folder / "reference-water-rigid.json").read_text())
    ref_arrays = read_arrays(folder / "reference-water-rigid.npz")
    results = sorted(folder.glob("water-rigid-*fs.json"))
    assert results
    for path in results:
        result = json.loads(path.read_text())
        assert result["reference"]["settings_hash"] == reference["settings_hash"]
        again = compare_result(result, reference, read_arrays(path.with_suffix(".npz")), ref_arrays)
        assert _differences(again, result) == [], path.name


def _differences(a, b, where=""):
    """Where two JSON-like values differ (floats within a relative 1e-4: RDFs are stored as float32)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return ([f"{where}/{k}: only one has it" for k in set(a) ^ set(b)]
                + [d for k in set(a) & set(b) for d in _differences(a[k], b[k], f"{where}/{k}")])
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-12) or (a != a and b != b) else [f"{where}: {a} != {b}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def test_the_longest_cached_reference_counts_its_pooled_runs(tmp_path):
    from openmm_flashmd.validation.reference import find_cached_reference

    for stem, nvt in (("reference-box", {"length_ps": 100.0, "pooled_length_ps": 2000.0}),
                      ("reference-box-other", {"length_ps": 500.0})):
        (tmp_path / f"{stem}.json").write_text(json.dumps({"system": "box", "nvt": nvt}))
    assert find_cached_reference("box", tmp_path).name == "reference-box.json"
