"""The bundled stride models: they load by name, match their built-in systems, have model
cards, and run stably in OpenMM; the default `openmm-flashmd simulate` job works."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import openmm
import pytest
from openmm import unit

import openmm_flashmd  # noqa: F401
from openmm_flashmd import FlashMDIntegrator, load_model, read_metadata
from openmm_flashmd.analysis.report import failed_checks, read_log, unjudged_checks
from openmm_flashmd.analysis.thermo import KB, degrees_of_freedom
from openmm_flashmd.cli import main
from openmm_flashmd.model.bundled import bundled_models, split_model_name
from openmm_flashmd.simulate import DEFAULT_MODELS
from openmm_flashmd.systems import get_system
from openmm_flashmd.systems.loading import make_platform

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = bundled_models()
EXPECTED = ["water-rigid-16fs", "water-rigid-8fs", "water-rigid-4fs", "alanine-dipeptide-implicit-hbonds-8fs",
            "alanine-dipeptide-implicit-hbonds-16fs"]


def test_every_promised_model_is_bundled_and_every_default_exists():
    assert set(EXPECTED) <= set(BUNDLED)
    assert set(DEFAULT_MODELS.values()) <= set(BUNDLED)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_model_matches_its_name_system_and_size(name):
    path = BUNDLED[name]
    assert path.stat().st_size <= 5 * 1024 * 1024
    meta = read_metadata(load_model(name))
    system_name, stride_fs = split_model_name(name)
    assert meta["stride"] == pytest.approx(stride_fs / 1000)
    built = get_system(system_name)
    numbers = {atom.element.atomic_number for atom in built.topology.atoms()}
    assert set(meta["elements"]) == numbers
    assert meta["periodic"] == built.system.usesPeriodicBoundaryConditions()
    FlashMDIntegrator(built.system, name, temperature=300 * unit.kelvin)  # passes every compatibility check
    card = path.with_suffix(".md").read_text()
    assert f"`{name}`" in card and "## Reproduce" in card and "## Held-out strides" in card
    # the held-out table is the one `openmm-flashmd evaluate` wrote, KE ratio per element included
    held_out = json.loads((ROOT / "benchmarks" / "results" / "held_out" / f"{name}.json").read_text())
    rows = {line.split("|")[1].strip(): line for line in card.splitlines() if line.startswith("| ")}
    for entry in held_out["per_element"].values():
        row = rows[entry["symbol"]]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[:2] == [entry["symbol"], f"{entry['dq_rmse']:.3g}"]
        assert cells[7] == f"{entry['kinetic_energy_ratio']:.2f}"


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_model_recipe_generates_and_trains_it_at_its_stride(name):
    """examples/models/bundle.py quotes, in each card, the build_all.sh commands that make the
    model: a data block that generates reference MD of its system, then its own training
    block at its stride, then the bundling command."""
    spec = importlib.util.spec_from_file_location("bundle", ROOT / "examples" / "models" / "bundle.py")
    bundle = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bundle)
    recipe = bundle.recipe(name)
    system_name, stride_fs = split_model_name(name)
    generate, train = recipe.index("openmm-flashmd generate"), recipe.index("openmm-flashmd train")
    assert generate < train and f"--system {system_name} " in recipe[generate:train]
    assert f"--stride {stride_fs / 1000:g}" in recipe[train:]
    assert recipe.rstrip().endswith(f'bundle.py {name} "$WORK/{name}" --overwrite')


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_model_runs_ten_strides_without_exploding(name):
    """10 strides of NVT ("O F E O") from an equilibrated 300 K state: finite, filtered, not exploded.

    "Exploded" here: a kinetic temperature above twice the target at any of the ten strides
    (stricter than benchmarks/validate.py, which averages over 1 ps; the ten strides start from
    a seeded reference state). The validation report says how long each model lasts beyond this.
    """
    system_name, _ = split_model_name(name)
    built = get_system(system_name)
    platform = make_platform("CPU")
    langevin = openmm.LangevinMiddleIntegrator(300, 1, built.reference_timestep)
    langevin.setRandomNumberSeed(1)
    equilibrate = openmm.Context(built.system, langevin, platform)
    equilibrate.setPositions(built.positions)
    openmm.LocalEnergyMinimizer.minimize(equilibrate, 10, 200)
    equilibrate.setVelocitiesToTemperature(300, 1)
    langevin.step(400)
    start = equilibrate.getState(getPositions=True, getVelocities=True)

    integrator = FlashMDIntegrator(built.system, name, temperature=300 * unit.kelvin,
                                   collision_rate=1 / unit.picosecond, splitting="O F E O", random_seed=1)
    context = openmm.Context(built.system, integrator, platform)
    context.setPositions(start.getPositions())
    context.setVelocities(start.getVelocities())
    dof = degrees_of_freedom(built.system)
    for _ in range(10):
        integrator.step(1)
        state = context.getState(getEnergy=True, getPositions=True)
        temperature = 2 * state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) / (dof * KB)
        assert np.all(np.isfinite(state.getPositions(asNumpy=True)._value))
        assert 0 < temperature < 600, temperature
    assert integrator.filter_statistics["count"] == 10


def test_default_simulate_job_writes_trajectory_log_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["simulate", str(out), "--time", "0.64", "--report-interval", "0.064", "--quiet"]) == 0
    for name in ("trajectory.dcd", "log.csv", "report.md", "temperature.png", "energy.png", "rdf_OO.png"):
        assert (out / name).exists(), name
    report = (out / "report.md").read_text()
    assert "water-rigid-16fs" in report and "✅ run finished" in report and "Integrated absolute difference from the bundled reference" in report
    assert len(read_log(out / "log.csv")["time_ps"]) == 10
    # failed and unjudged trust checks, and only those, are also said on the terminal
    err = capsys.readouterr().err
    assert bool(failed_checks(out / "report.md")) == ("trust check(s) failed" in err)
    assert bool(unjudged_checks(out / "report.md")) == ("trust check(s) not judged" in err)
    # the same output directory is refused without --overwrite or --resume
    assert main(["simulate", str(out), "--time", "0.64", "--quiet"]) == 1
