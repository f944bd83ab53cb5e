"""The main job: simulate, its outputs, resume, refusals and the CLI."""

import io
import json

import numpy as np
import pytest

from openmm_flashmd import save_model
from openmm_flashmd.analysis.report import read_log
from openmm_flashmd.cli import main
from openmm_flashmd.model import FreeParticleStrideModel
from openmm_flashmd.simulate import simulate


@pytest.fixture()
def free_model(tmp_path):
    return str(save_model(FreeParticleStrideModel(0.002), tmp_path / "free.pt"))


def test_simulate_writes_trajectory_log_and_report_and_resumes(tmp_path, free_model):
    out = tmp_path / "run"
    run = simulate(out, system="argon", model=free_model, duration=0.04, report_interval=0.01, progress=False,
                   system_options={"n_atoms": 27})
    assert run.steps == 20
    log = read_log(run.log)
    assert list(log["step"]) == [5, 10, 15, 20]
    assert np.allclose(log["time_ps"], [0.01, 0.02, 0.03, 0.04])
    assert "temperature_Ar_K" in log and np.all(log["filter_strides"] == 5)
    text = run.report.read_text()
    assert "## Temperature" in text and (out / "temperature.png").stat().st_size > 0

    with pytest.raises(FileExistsError, match=r"--overwrite \(overwrite=True\) .* --resume \(resume=True\)"):
        simulate(out, system="argon", model=free_model, duration=0.04, progress=False, system_options={"n_atoms": 27})

    resumed = simulate(out, system="argon", model=free_model, duration=0.08, report_interval=0.01, progress=False,
                       resume=True, system_options={"n_atoms": 27})
    assert resumed.steps == 40
    assert list(read_log(resumed.log)["step"]) == [5, 10, 15, 20, 25, 30, 35, 40]


def test_the_default_length_lets_the_default_systems_report_judge_its_temperature(tmp_path):
    from openmm_flashmd.simulate import DEFAULT_SYSTEM, DEFAULTS, _resolve, default_duration

    unset = {name: None for name in ("system", "structure", "model", "ensemble", "temperature", "pressure",
                                     "collision_rate", "duration", "report_interval", "trajectory_format",
                                     "splitting", "seed", "fallback", "fallback_timestep", "system_options")}
    settings = tmp_path / "settings.json"
    assert _resolve(unset, settings, resume=False)["duration"] == default_duration(DEFAULT_SYSTEM) == 400.0
    assert _resolve({**unset, "system": "argon"}, settings, resume=False)["duration"] == DEFAULTS["duration"] == 10.0
    assert _resolve({**unset, "duration": 2.5}, settings, resume=False)["duration"] == 2.5
    settings.write_text(json.dumps({"system": "alanine-dipeptide-implicit-hbonds"}))  # a run recorded without its length
    assert _resolve(unset, settings, resume=True)["duration"] == 10.0


def test_simulate_refuses_unknown_inputs(tmp_path, free_model):
    with pytest.raises(ValueError, match="ensemble must be one of"):
        simulate(tmp_path / "a", system="argon", model=free_model, ensemble="nph", progress=False)
    with pytest.raises(ValueError, match="npt needs a periodic System"):
        simulate(tmp_path / "b", system="alanine-dipeptide-implicit", model=free_model, ensemble="npt",
                 progress=False)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        simulate(tmp_path / "c", system="argon", model=free_model, resume=True, progress=False)


def test_cli_simulate_with_an_unknown_model_explains(capsys, tmp_path):
    assert main(["simulate", str(tmp_path / "run"), "--model", "water-3fs"]) == 1
    err = capsys.readouterr().err
    assert "no model file or bundled model named 'water-3fs'" in err and "water-rigid-16fs" in err


def test_flashmd_reporter_refuses_existing_file(tmp_path):
    from openmm_flashmd.reporters import FlashMDReporter

    path = tmp_path / "log.csv"
    path.write_text("old")
    with pytest.raises(FileExistsError):
        FlashMDReporter(path, 10)
    FlashMDReporter(io.StringIO(), 10)


def test_flashmd_reporter_logs_the_molecules_motion_and_keeps_an_older_logs_columns(tmp_path):
    """64 rigid waters: the molecules' translational and rotational temperatures, which add up to the
    kinetic temperature (192 + 192 of its 384 degrees of freedom); a log written without those
    columns gets rows without them when a run appends to it."""
    import openmm
    from openmm import app, unit

    from openmm_flashmd.reporters import FlashMDReporter
    from openmm_flashmd.systems import get_system

    built = get_system("water-rigid")

    def run(path, **options):
        integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picosecond)
        simulation = app.Simulation(built.topology, built.system, integrator,
                                    openmm.Platform.getPlatformByName("Reference"))
        simulation.context.setPositions(built.positions)
        simulation.context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
        simulation.reporters.append(FlashMDReporter(str(path), 2, **options))
        simulation.step(4)
        del simulation.reporters[:]

    run(tmp_path / "new.csv")
    log = read_log(tmp_path / "new.csv")
    assert len(log["step"]) == 2
    np.testing.assert_allclose(192 * (log["temperature_translation_K"] + log["temperature_rotation_K"]),
                               384 * log["temperature_K"], rtol=3e-3)  # Langevin's velocities: constraints to 1e-5
    old = tmp_path / "old.csv"
    header, *rows = (tmp_path / "new.csv").read_text().splitlines()
    names = header.split(",")
    keep = [i for i, n in enumerate(names) if n not in ("temperature_translation_K", "temperature_rotation_K")]
    old.write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in [header] + rows) + "\n")
    run(old, append=True)
    lines = old.read_text().splitlines()
    assert len(lines) == 5 and {len(line.split(",")) for line in lines} == {len(keep)}


def test_simulate_reports_a_failed_stride_and_raises(tmp_path):
    """Without the fallback, a model that returns NaN after a few strides stops the run: the
    report is written with a failed trust check."""
    from openmm_flashmd import FlashMDError
    from toy_models import NaNAfterStrideModel

    model = str(save_model(NaNAfterStrideModel(0.002, 0.03), tmp_path / "nan.pt"))
    out = tmp_path / "run"
    with pytest.raises(FlashMDError, match="report.md"):
        simulate(out, system="argon", model=model, ensemble="nve", duration=0.1, report_interval=0.01,
                 fallback=False, progress=False, system_options={"n_atoms": 27})
    report = (out / "report.md").read_text()
    assert "❌ run finished (FlashMD stride" in report and "Do not use these results" in report


def test_simulate_falls_back_to_md_and_says_so(tmp_path):
    """With the fallback (default), strides of a failing model run as MD: the run finishes, the log
    counts the rejections per reason and the report fails the monitor's check in bold."""
    from toy_models import EveryKthStrideFails

    model = str(save_model(EveryKthStrideFails(FreeParticleStrideModel(0.002), 4), tmp_path / "quarter.pt"))
    out = tmp_path / "run"
    simulate(out, system="argon", model=model, ensemble="nve", duration=0.08, report_interval=0.01,
             fallback_timestep=0.001, progress=False, system_options={"n_atoms": 27})
    log = read_log(out / "log.csv")
    assert log["monitor_strides"].sum() == 40 and log["rejected_strides"].sum() == 10
    assert log["rejected_nan_output"].sum() == 10 and log["rejected_energy"].sum() == 0
    report = (out / "report.md").read_text()
    assert "✅ run finished" in report
    assert "❌ stride monitor fell back to MD on at most 1 % of strides (25.00 %)" in report
    assert "**25.0 % of this run is fallback MD" in report
    settings = json.loads((out / "settings.json").read_text())
    assert settings["fallback"] is True and settings["fallback_substeps"] == 2


def test_nve_reports_its_energy_drift(tmp_path, free_model):
    """An NVE run is judged on its total-energy drift, never on "run finished" alone."""
    out = tmp_path / "nve"
    simulate(out, system="argon", model=free_model, ensemble="nve", duration=0.04, report_interval=0.01,
             progress=False, system_options={"n_atoms": 27})
    report = (out / "report.md").read_text()
    assert "total energy conserved (NVE): drift within" in report and "for 27 atoms" in report


def test_energy_drift_check_thresholds():
    from openmm_flashmd.analysis.report import MAX_NVE_DRIFT_PER_ATOM, energy_drift_check

    time = np.linspace(0.0, 10.0, 50)
    ok, text = energy_drift_check(time, -1000.0 + 0.5 * MAX_NVE_DRIFT_PER_ATOM * 100 * time, 100)
    assert ok and "+0.0025 kJ/mol/ps per atom" in text
    assert not energy_drift_check(time, -1000.0 + 2 * MAX_NVE_DRIFT_PER_ATOM * 100 * time, 100)[0]
    assert not energy_drift_check(time, -1000.0 - 2 * MAX_NVE_DRIFT_PER_ATOM * 100 * time, 100)[0]
    broken = np.full_like(time, -1000.0)
    broken[-1] = np.nan
    assert not energy_drift_check(time, broken, 100)[0]


def test_constrained_runs_are_judged_per_element_against_bundled_reference_md():
    from openmm_flashmd.analysis.report import expected_temperatures
    from openmm_flashmd.systems.references import REFERENCE_RECORDS, reference_temperatures

    assert all(path.exists() for path in REFERENCE_RECORDS.values())
    ref = reference_temperatures("alanine-dipeptide-implicit-hbonds")
    expected = expected_temperatures(300.0, ["all", "C", "H", "N", "O"],
                                      {"system": "alanine-dipeptide-implicit-hbonds", "constraints": 12})
    scale = 300.0 / ref["measured_temperature_K"]
    assert expected["H"] == pytest.approx(ref["temperature_by_element_K"]["H"] * scale) and expected["H"] < 250
    assert set(expected) == {"all", "C", "H", "N", "O"}
    # a constrained System the package has no reference for: only the overall temperature is judged
    assert expected_temperatures(300.0, ["all", "H"], {"system": "custom", "constraints": 3}) == {"all": 300.0}
    assert reference_temperatures("custom") is None
    # ... but the molecules' translation and rotation are, against the thermostat (equipartition)
    assert expected_temperatures(300.0, ["all", "H", "rotation", "translation"],
                                 {"system": "custom", "constraints": 3}) == {"all": 300.0, "translation": 300.0,
                                                                             "rotation": 300.0}


@pytest.mark.parametrize("ensemble, check", [
    ("npt", "density within 2 % of reference MD's 0.9843 g/cm³"),
    ("nve", "per element (NVE, at the run's own temperature): temperature within 5 K of H"),
])
def test_every_ensemble_has_a_check_beyond_run_finished(tmp_path, free_model, ensemble, check):
    """NpT is judged on the bundled reference density, NVE on how its elements share the kinetic
    energy (rigid water: as in reference MD), besides the checks every run gets."""
    out = tmp_path / ensemble
    simulate(out, system="water-rigid", model=free_model, ensemble=ensemble, duration=0.02, report_interval=0.004,
             progress=False)
    log = read_log(out / "log.csv")
    assert "density_g_cm3" in log and 0.5 < log["density_g_cm3"][0] < 1.5
    assert 100 < log["temperature_translation_K"][0] < 600 and 100 < log["temperature_rotation_K"][0] < 600
    assert check in (out / "report.md").read_text()


def test_report_does_not_pass_a_temperature_its_run_is_too_short_to_resolve(tmp_path, free_model):
    from scipy.signal import lfilter

    from openmm_flashmd.analysis.report import failed_checks, unjudged_checks, write_report

    out = tmp_path / "run"
    run = simulate(out, system="argon", model=free_model, duration=0.04, report_interval=0.01, progress=False,
                   system_options={"n_atoms": 27})
    header, first = run.log.read_text().splitlines()[:2]
    names, template = header.split(","), first.split(",")
    rng, target = np.random.default_rng(0), json.loads((out / "settings.json").read_text())["temperature_K"]

    def report_for(temperatures):
        rows = []
        for i, t in enumerate(temperatures):
            row = dict(zip(names, template), step=str(5 * (i + 1)), time_ps=f"{0.01 * (i + 1):.2f}")
            row.update(temperature_K=f"{t:.3f}", temperature_Ar_K=f"{t:.3f}")
            rows.append(",".join(row[n] for n in names))
        log = tmp_path / "log.csv"
        log.write_text("\n".join([header] + rows) + "\n")
        report = write_report(out, log, run.trajectory, out / "topology.pdb", tmp_path / "report.md")
        return report.read_text(), failed_checks(report), unjudged_checks(report)

    text, failed, unjudged = report_for(target + rng.normal(scale=1.0, size=400))  # 200 samples of ±1 K
    assert "- ✅ temperature within 5 K" in text and not failed and not unjudged
    slow = lfilter([1.0], [1.0, -0.98], rng.normal(scale=6.0, size=400))  # ±30 K, slowly correlated
    text, failed, unjudged = report_for(slow - np.mean(slow[200:]) + target)  # mean on target
    assert not failed and len(unjudged) == 1 and unjudged[0].startswith("not judged, run too short")
    assert "- ⚠️ not judged" in text and "could not be judged" in text and "Do not use" not in text
    text, failed, unjudged = report_for(target + 20 + rng.normal(scale=1.0, size=400))
    assert len(failed) == 1 and "worst: all +20" in failed[0] and not unjudged and "Do not use" in text
