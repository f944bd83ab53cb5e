"""Training, export, evaluation and the command line."""

import csv
import json
import math

import h5py
import numpy as np
import pytest
import torch

import openmm_flashmd  # noqa: F401
import openmm
from openmm import app, unit

from flashmd_data_helpers import FAST, TINY_MODEL, diatomics
from openmm_flashmd.cli import main
from openmm_flashmd.data.dataset import DataError, load_trajectories
from openmm_flashmd.data.generate import generate
from openmm_flashmd.data.schema import TrajectoryFormatError
from openmm_flashmd.model.protocol import load_model, read_metadata
from openmm_flashmd.train import (
    ModelDataMismatch, average_models, default_hypers, evaluate, export_model, format_table, load_hypers,
    model_from_checkpoint, train,
)

STRIDE = 0.032  # ps: 8 record intervals, ~0.15 of the dimer vibration period


def _quick(**extra):
    o = dict(TINY_MODEL)
    o.update({"training.max_steps": 20, "training.validate_every": 10, "training.checkpoint_every": 10,
              "training.warmup_steps": 5, "training.batch_size": 8, "data.validation_fraction": 0.25})
    o.update(extra)
    return o


@pytest.fixture(scope="module")
def dimer_data(tmp_path_factory):
    system, top, pos = diatomics()
    path = tmp_path_factory.mktemp("train_data") / "dimers.h5"
    generate(path, system, pos, n_segments=16, **FAST)
    return path


@pytest.fixture(scope="module")
def trained(dimer_data, tmp_path_factory):
    """Train the tiny PET for ~700 steps (about 10-30 s on 2 CPU cores)."""
    out = tmp_path_factory.mktemp("runs") / "e2e"
    overrides = _quick(**{"training.max_steps": 700, "training.validate_every": 100, "training.checkpoint_every": 350,
                          "training.warmup_steps": 20, "training.learning_rate": 1e-2, "training.batch_size": 32})
    result = train(dimer_data, out, STRIDE, overrides=overrides, device="cpu", progress=False)
    return result


# ----------------------------------------------------------------------------- hypers

def test_hypers_defaults_and_overrides(tmp_path):
    d = default_hypers()
    assert set(d) == {"model", "training", "loss", "data"}
    h = load_hypers({"training": {"batch_size": 4}}, ["training.learning_rate=1e-3", "model.cutoff=0.3"])
    assert h["training"]["batch_size"] == 4 and h["training"]["learning_rate"] == 1e-3
    assert h["model"]["cutoff"] == 0.3 and h["model"]["d_pet"] == d["model"]["d_pet"]
    f = tmp_path / "h.yaml"
    f.write_text("loss:\n  velocities: 2.0\n")
    assert load_hypers(f)["loss"]["velocities"] == 2.0
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        load_hypers(overrides={"training.lerning_rate": 1})
    with pytest.raises(ValueError):
        load_hypers(overrides={"model.d_pet": 10, "model.num_heads": 4})  # not divisible
    with pytest.raises(ValueError):
        load_hypers(overrides=["training.scheduler=sometimes"])


# ------------------------------------------------------------------------- end to end

def test_end_to_end_beats_free_flight(trained, dimer_data, tmp_path):
    out = trained.output_dir
    for name in ("hypers.yaml", "split.json", "log.csv", "loss_curve.png", "checkpoint.pt", "model.pt",
                 "validation.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(100, 701, 100))
    assert float(rows[-1]["val_loss"]) < 0.5 * float(rows[0]["val_loss"])

    model = load_model(trained.model_path)
    meta = read_metadata(model)
    data = load_trajectories(dimer_data)
    assert meta["stride"] == pytest.approx(STRIDE) and meta["kind"] == "pet"
    assert meta["elements"] == [6] and meta["masses"] == {"6": pytest.approx(12.011)}
    assert meta["cutoff"] == pytest.approx(0.3) and meta["periodic"] is False
    assert meta["hypers"]["d_pet"] == 16
    prov = meta["provenance"]
    assert prov["dataset_sha256"] == data.sha256
    assert "torch" in prov["package_versions"] and "openmm" in prov["package_versions"]
    split = json.loads((out / "split.json").read_text())
    assert prov["validation_segments"] == split["validation_segments"]
    assert not set(split["validation_segments"]) & set(split["training_segments"])
    assert meta["validation"]["errors"]["all"]["dq_rmse"] > 0

    result = evaluate(trained.model_path, dimer_data, output_json=tmp_path / "eval.json")
    assert result["segments_used"].startswith("validation")
    assert json.loads((tmp_path / "eval.json").read_text())["n_pairs"] == result["n_pairs"]
    table = format_table(result)
    print("\n" + table)
    dq_gain = result["all"]["dq_improvement"]
    v_gain = result["all"]["v_improvement"]
    # one stride of 32 fs: the trained model beats free flight / unchanged velocities clearly
    # (measured 11.7x and 9.8x on 2 CPU cores; thresholds leave room for run-to-run noise)
    assert dq_gain > 6.0, table
    assert v_gain > 5.0, table
    # the exported TorchScript model reproduces the numbers measured at export
    assert result["all"]["dq_rmse"] == pytest.approx(meta["validation"]["errors"]["all"]["dq_rmse"], rel=1e-4)
    # batched evaluation gives the same numbers
    batched = evaluate(trained.model_path, dimer_data, batch_size=32)
    assert batched["all"]["dq_rmse"] == pytest.approx(result["all"]["dq_rmse"], rel=1e-4)
    # rebuilding from the checkpoint gives the same model
    rebuilt = model_from_checkpoint(out / "checkpoint.pt")
    assert evaluate(rebuilt, dimer_data)["all"]["dq_rmse"] == pytest.approx(result["all"]["dq_rmse"], rel=1e-5)


def test_average_models_interpolates_every_weight_and_refuses_other_models(tmp_path):
    from openmm_flashmd.model.pet import PETHypers, PETStrideModel

    hypers = PETHypers(**{k.split(".")[1]: v for k, v in TINY_MODEL.items()})
    paths = []
    for seed, stride in ((0, STRIDE), (1, STRIDE), (2, 2 * STRIDE)):
        torch.manual_seed(seed)
        model = PETStrideModel.build(hypers, stride, [6], {6: 12.011}, False, {"seed": seed})
        with torch.no_grad():  # distinct output scales too (buffers are averaged like weights)
            model.dq_scale.fill_(0.01 * (seed + 1))
        paths.append(export_model(model, tmp_path / f"m{seed}.pt"))
    states = [load_model(p).state_dict() for p in paths[:2]]
    for weight in (0.0, 0.25, 1.0):
        mixed = average_models(paths[0], paths[1], weight).state_dict()
        for name, value in mixed.items():
            expected = (1 - weight) * states[0][name] + weight * states[1][name] if value.is_floating_point() \
                else states[0][name]
            assert torch.allclose(value, expected, rtol=0, atol=1e-7), name
    averaged = average_models(paths[0], paths[1], 0.5)
    assert float(averaged.dq_scale) == pytest.approx(0.015)
    saved = export_model(averaged, tmp_path / "soup.pt")
    meta = read_metadata(load_model(saved))
    assert meta["provenance"]["weight_average"]["weight"] == 0.5
    assert meta["provenance"]["weight_average"]["second_provenance"]["seed"] == 1
    assert meta["validation"] == {}
    with pytest.raises(ValueError, match="stride differ"):
        average_models(paths[0], paths[2], 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        average_models(paths[0], paths[1], 1.5)


def test_rollout_evaluation_compounds_strides(trained, dimer_data):
    from openmm_flashmd.data.dataset import StridePairs

    result = evaluate(trained.model_path, dimer_data, max_pairs=40, batch_size=8, energy=False, rollout=3)
    rollout = result["rollout"]
    assert rollout["strides"] == 3 and rollout["n_starts"] == 40
    times = [r["time_ps"] for r in rollout["per_stride"]]
    assert times == pytest.approx([STRIDE, 2 * STRIDE, 3 * STRIDE])
    for r in rollout["per_stride"]:  # the trained model beats free flight over every horizon
        assert 0 < r["q_rmse"] < 0.5 * r["q_free_flight_rmse"], format_table(result)
        assert r["per_element"]["C"]["q_rmse"] == pytest.approx(r["q_rmse"])  # one element
    # stride 2 by hand: the model applied to its own first prediction
    model = load_model(trained.model_path)
    data = load_trajectories(dimer_data)
    starts = StridePairs(data, STRIDE, segments=[1], rollout=2)  # every start of segment 1, as evaluated below
    batch = starts.get_batch(np.arange(len(starts)))
    masses, numbers = torch.as_tensor(data.masses), torch.as_tensor(data.atomic_numbers)
    with torch.no_grad():
        q, v = model.forward_batch(batch["positions"], batch["velocities"], masses, numbers, batch["box"])
        q, v = model.forward_batch(q, v, masses, numbers, batch["box"])
    by_hand = float(torch.sqrt(((q.double() - batch["rollout_positions"][:, 0]) ** 2).sum(-1).mean()))
    again = evaluate(trained.model_path, dimer_data, segments=[1], max_pairs=0, batch_size=16, energy=False,
                     rollout=2)
    assert again["rollout"]["per_stride"][1]["q_rmse"] == pytest.approx(by_hand, rel=1e-6)
    assert "rollout:" in format_table(again)


def test_trained_model_runs_in_flashmd_integrator(trained, dimer_data):
    """generate -> train -> export -> FlashMDIntegrator: in-context strides follow the reference MD."""
    from openmm_flashmd import FlashMDIntegrator

    data = load_trajectories(dimer_data)
    split = json.loads((trained.output_dir / "split.json").read_text())
    segment = list(data.segment_ids).index(split["validation_segments"][0])
    frames_per_stride = round(STRIDE / data.record_interval)
    x0, v0 = data.positions[segment, 0], data.velocities[segment, 0]
    system, topology, _ = diatomics()
    integrator = FlashMDIntegrator(system, trained.model_path, splitting="F", topology=topology)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x0)
    context.setVelocities(v0)
    integrator.step(2)
    x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    reference = data.positions[segment, 2 * frames_per_stride]
    free_flight = x0 + v0 * 2 * STRIDE
    model_error = np.sqrt(((x - reference) ** 2).mean())
    free_error = np.sqrt(((free_flight - reference) ** 2).mean())
    assert model_error < free_error / 3, (model_error, free_error)

    # with the energy filter the learned map conserves the System's energy
    system, topology, _ = diatomics()
    filtered = FlashMDIntegrator(system, trained.model_path, splitting="F E", topology=topology)
    context = openmm.Context(system, filtered, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x0)
    context.setVelocities(v0)

    def total():
        state = context.getState(getEnergy=True)
        return (state.getPotentialEnergy() + state.getKineticEnergy()).value_in_unit(unit.kilojoule_per_mole)

    h0 = total()
    filtered.step(50)
    assert abs(total() - h0) < 1e-6 * abs(h0)
    assert filtered.filter_statistics["clamped"] == 0


@pytest.mark.slow
def test_longer_training_gains_an_order_of_magnitude(dimer_data, tmp_path):
    overrides = _quick(**{"training.max_steps": 2500, "training.validate_every": 250, "training.checkpoint_every": 2500,
                          "training.warmup_steps": 50, "training.learning_rate": 1e-2, "training.batch_size": 32})
    result = train(dimer_data, tmp_path / "long", STRIDE, overrides=overrides, device="cpu", progress=False)
    ev = evaluate(result.model_path, dimer_data)
    print("\n" + format_table(ev))
    assert ev["all"]["dq_improvement"] > 10.0 and ev["all"]["v_improvement"] > 8.0


# ----------------------------------------------------------------------------- resume

def test_resume_continues_like_an_uninterrupted_run(dimer_data, tmp_path):
    # constant schedule: the learning rate does not depend on max_steps, which the resumed run extends
    const = {"training.scheduler": "constant"}
    full = train(dimer_data, tmp_path / "full", STRIDE, overrides=_quick(**const, **{"training.max_steps": 30}),
                 device="cpu", progress=False)
    part = tmp_path / "part"
    train(dimer_data, part, STRIDE, overrides=_quick(**const, **{"training.max_steps": 20}), device="cpu",
          progress=False, export=False)
    # change of max_steps is allowed on resume; the rest comes from the checkpoint
    resumed = train(dimer_data, part, STRIDE, overrides={"training.max_steps": 30}, resume=True, device="cpu",
                    progress=False)
    assert resumed.steps == 30
    rows = list(csv.DictReader(open(part / "log.csv")))
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model_state"]
    b = torch.load(part / "checkpoint.pt", weights_only=False)["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert resumed.best_validation_loss == pytest.approx(full.best_validation_loss, rel=1e-5)
    with pytest.raises(ValueError, match="different 'model'"):
        train(dimer_data, part, STRIDE, overrides={"model.d_pet": 32}, resume=True, device="cpu", progress=False)


def test_stop_after_then_resume_is_the_uninterrupted_cosine_run(dimer_data, tmp_path, capsys):
    """--stop-after keeps the cosine schedule of max_steps: stopping and resuming changes nothing."""
    full = train(dimer_data, tmp_path / "full", STRIDE, overrides=_quick(), device="cpu", progress=False)
    part = tmp_path / "part"
    args = ["train", str(dimer_data), str(part), "--stride", str(STRIDE), "--device", "cpu", "--quiet"]
    args += [f"--set={k}={v}" for k, v in _quick().items()]
    assert main(args + ["--stop-after", "10"]) == 0
    assert "stopped after step 10; continue with --resume" in capsys.readouterr().out
    assert not (part / "model.pt").exists() and (part / "checkpoint.pt").exists()
    resumed = train(dimer_data, part, STRIDE, resume=True, device="cpu", progress=False)
    assert resumed.steps == 20 and resumed.model_path is not None
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model_state"]
    b = torch.load(part / "checkpoint.pt", weights_only=False)["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert resumed.best_validation_loss == pytest.approx(full.best_validation_loss, rel=1e-5)


# ----------------------------------------------------------------------------- errors

def test_training_errors(dimer_data, tmp_path):
    run = tmp_path / "run"
    train(dimer_data, run, STRIDE, overrides=_quick(**{"training.max_steps": 2}), device="cpu", progress=False,
          export=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        train(dimer_data, run, STRIDE, overrides=_quick(), device="cpu", progress=False)
    train(dimer_data, run, STRIDE, overrides=_quick(**{"training.max_steps": 2}), overwrite=True, device="cpu",
          progress=False, export=False)
    with pytest.raises(DataError, match="multiple of the record interval"):
        train(dimer_data, tmp_path / "r1", 0.010, overrides=_quick(), device="cpu", progress=False)
    with pytest.raises(FileNotFoundError):
        train(tmp_path / "none.h5", tmp_path / "r2", STRIDE, overrides=_quick(), progress=False)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        (tmp_path / "r4").mkdir()
        (tmp_path / "r4" / "something").write_text("x")
        train(dimer_data, tmp_path / "r4", STRIDE, overrides=_quick(), resume=True, device="cpu", progress=False)

    bad = {}
    for name in ("nan", "novel", "corrupt", "foreign"):
        bad[name] = tmp_path / f"{name}.h5"
        bad[name].write_bytes(dimer_data.read_bytes())
    with h5py.File(bad["nan"], "r+") as f:
        f["positions"][0, 5, 1, 2] = np.nan
    with h5py.File(bad["novel"], "r+") as f:
        del f["velocities"]
    bad["corrupt"].write_bytes(dimer_data.read_bytes()[:2048])
    with h5py.File(bad["foreign"], "r+") as f:
        f.attrs["format"] = "ase-trajectory"
    with pytest.raises(DataError, match="non-finite"):
        train(bad["nan"], tmp_path / "r5", STRIDE, overrides=_quick(), progress=False)
    with pytest.raises(TrajectoryFormatError, match="velocities"):
        train(bad["novel"], tmp_path / "r6", STRIDE, overrides=_quick(), progress=False)
    with pytest.raises(TrajectoryFormatError):
        train(bad["corrupt"], tmp_path / "r7", STRIDE, overrides=_quick(), progress=False)
    with pytest.raises(TrajectoryFormatError, match="not an openmm-flashmd"):
        train(bad["foreign"], tmp_path / "r8", STRIDE, overrides=_quick(), progress=False)


def test_evaluate_errors(trained, dimer_data, tmp_path):
    heavier_system, _, pos = diatomics(mass=12.4)
    heavier = generate(tmp_path / "heavy.h5", heavier_system, pos, n_segments=1, **FAST)
    with pytest.raises(ModelDataMismatch, match="mass"):
        evaluate(trained.model_path, heavier)
    argon = generate(tmp_path / "ar.h5", "argon", n_segments=1, segment_length=0.04, thermalize=0.0,
                     decorrelate=0.0, timestep=0.002, record_interval=0.004, platform="Reference", progress=False)
    with pytest.raises(ModelDataMismatch, match="elements"):
        evaluate(trained.model_path, argon)
    with pytest.raises(ModelDataMismatch, match="stride"):
        evaluate(trained.model_path, dimer_data, stride=0.016)
    (tmp_path / "exists.json").write_text("{}")
    with pytest.raises(FileExistsError):
        evaluate(trained.model_path, dimer_data, output_json=tmp_path / "exists.json")
    with pytest.raises(ValueError, match="not complete segments"):
        evaluate(trained.model_path, dimer_data, segments=[99])
    res = evaluate(trained.model_path, dimer_data, segments="all", max_pairs=20)
    assert res["segments_used"] == "all" and res["n_pairs"] == 20


def test_evaluate_measures_the_frame_dependence_of_a_stride(trained, dimer_data):
    """Each pair is predicted once more in a randomly turned frame: free flight is equivariant
    (differences at round-off), a PET learns equivariance only from rotated data (not zero)."""
    from openmm_flashmd.model import FreeParticleStrideModel

    free = evaluate(FreeParticleStrideModel(STRIDE), dimer_data, segments="all", max_pairs=20, energy=False)
    pet = evaluate(trained.model_path, dimer_data, segments="all", max_pairs=20, energy=False)
    for z, e in free["per_element"].items():
        assert e["dq_frame_rms"] < 1e-6 and e["v_frame_rms"] < 1e-6
        assert pet["per_element"][z]["dq_frame_rms"] > 1e-5 and pet["per_element"][z]["v_frame_rms"] > 1e-4
    assert "frame dependence" in format_table(pet)
    skipped = evaluate(trained.model_path, dimer_data, segments="all", max_pairs=20, energy=False, frame_check=False)
    assert all("dq_frame_rms" not in e for e in skipped["per_element"].values())


def test_kinetic_energy_ratio_measures_damping():
    """A model that halves every velocity keeps a quarter of each element's kinetic energy;
    the exact answer keeps all of it (per element, whatever the masses)."""
    from openmm_flashmd.train.evaluate import _summarise, stride_errors

    gen = torch.Generator().manual_seed(0)
    q0, v0, v_ref = (torch.randn(3, 6, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    batch = {"positions": q0, "velocities": v0, "new_positions": q0 + 0.01 * v0, "new_velocities": v_ref,
             "stride": torch.full((3,), 0.01, dtype=torch.float64)}
    numbers = np.array([8, 1, 1, 8, 1, 1])
    exact = _summarise(stride_errors(0.01 * v0, v_ref, batch, numbers))
    damped = _summarise(stride_errors(0.01 * v0, 0.5 * v_ref, batch, numbers))
    for z in ("1", "8"):
        assert exact["per_element"][z]["kinetic_energy_ratio"] == pytest.approx(1.0, abs=1e-12)
        assert damped["per_element"][z]["kinetic_energy_ratio"] == pytest.approx(0.25, abs=1e-12)
        assert exact["per_element"][z]["v_rmse"] == 0.0
    assert "kinetic_energy_ratio" not in exact["all"]
    assert "KE ratio" in format_table({"stride": 0.01, "n_pairs": 3, "segments_used": "all", **damped})


# ------------------------------------------------------------------------ energy term

class HarmonicDimerEnergy(torch.nn.Module):
    """The reference potential of :func:`diatomics` in torch (kJ/mol; positions nm)."""

    def __init__(self, n_mol: int = 4, k: float = 5.0e3, r0: float = 0.15):
        super().__init__()
        self.k, self.r0, self.n = k, r0, n_mol

    def forward(self, positions, box):
        d = positions[1::2] - positions[0::2]
        r = torch.linalg.norm(d, dim=1)
        return (0.5 * self.k * (r - self.r0) ** 2).sum()


def test_energy_conservation_term(dimer_data, tmp_path):
    energy = HarmonicDimerEnergy()
    data = load_trajectories(dimer_data)
    # sanity: the torch energy is the stored potential energy
    e = energy(torch.as_tensor(data.positions[0, 0]), torch.zeros(3, 3))
    assert float(e) == pytest.approx(data.potential_energy[0, 0], rel=1e-6, abs=1e-6)
    res = train(dimer_data, tmp_path / "energy", STRIDE, overrides=_quick(**{"loss.energy": 0.1}),
                energy_model=energy, device="cpu", progress=False, export=False)
    rows = list(csv.DictReader(open(tmp_path / "energy" / "log.csv")))
    assert all(np.isfinite(float(r["train_loss_e"])) and float(r["train_loss_e"]) >= 0 for r in rows)
    assert res.steps == 20


def test_energy_term_defaults_to_the_data_system(dimer_data, tmp_path):
    """Without an energy_model the term uses the data's own System through OpenMM: the same
    logged loss as the torch twin of that potential, up to float32 round-off."""
    quick = _quick(**{"loss.energy": 0.1, "training.max_steps": 4, "training.validate_every": 2})
    train(dimer_data, tmp_path / "torch", STRIDE, overrides=quick, energy_model=HarmonicDimerEnergy(), device="cpu",
          progress=False, export=False)
    train(dimer_data, tmp_path / "openmm", STRIDE, overrides=quick, device="cpu", progress=False, export=False)
    rows = [list(csv.DictReader(open(tmp_path / name / "log.csv"))) for name in ("torch", "openmm")]
    assert len(rows[0]) == len(rows[1]) == 2
    for a, b in zip(*rows):
        assert float(a["train_loss_e"]) > 0
        assert float(b["train_loss_e"]) == pytest.approx(float(a["train_loss_e"]), rel=1e-3)
    # the potential-energy term alone needs the same potential
    quick.update({"loss.energy": 0.0, "loss.potential_energy": 0.1})
    train(dimer_data, tmp_path / "potential", STRIDE, overrides=quick, device="cpu", progress=False, export=False)
    rows = list(csv.DictReader(open(tmp_path / "potential" / "log.csv")))
    assert all(float(r["train_loss_u"]) > 0 and math.isnan(float(r["train_loss_e"])) for r in rows)


def test_potential_energy_term_weighs_position_errors_by_their_energy(dimer_data):
    """L_U: ((U(q') - U(q'_ref)) / (N kB T))^2 of each item; zero for the reference end state, and
    a stretch of one bond of the (unconstrained) dimers costs its harmonic energy; the gradient
    reaches the predicted positions."""
    from openmm_flashmd.train.trainer import KB, _Losses

    data = load_trajectories(dimer_data)
    masses = torch.as_tensor(data.masses, dtype=torch.float64)
    scales = {"dq_scale": 1.0, "p_scale": 1.0}
    energy = HarmonicDimerEnergy()
    losses = _Losses({"positions": 1, "velocities": 1, "energy": 0, "potential_energy": 3.0}, scales, masses, 300.0,
                     energy)
    q0 = torch.as_tensor(data.positions[0, :2], dtype=torch.float64)
    q1 = torch.as_tensor(data.positions[0, 2:4], dtype=torch.float64)
    v1 = torch.as_tensor(data.velocities[0, 2:4], dtype=torch.float64)
    batch = {"positions": q0, "new_positions": q1, "velocities": v1, "new_velocities": v1,
             "box": torch.zeros(2, 3, 3, dtype=torch.float64)}
    sqrt_m = masses.sqrt().view(1, -1, 1)
    exact = losses((q1 - q0) * sqrt_m, v1 * sqrt_m, batch)
    assert float(exact["loss_u"]) == pytest.approx(0.0, abs=1e-20) and "loss_e" not in exact
    stretched = q1.clone()
    stretched[0, 1] += 0.01 * (q1[0, 1] - q1[0, 0]) / torch.linalg.norm(q1[0, 1] - q1[0, 0])
    y_q = ((stretched - q0) * sqrt_m).requires_grad_(True)
    parts = losses(y_q, v1 * sqrt_m, batch)
    du = float(energy(stretched[0], batch["box"][0]) - energy(q1[0], batch["box"][0]))
    assert float(parts["loss_u"].detach()) == pytest.approx(0.5 * (du / (8 * KB * 300.0)) ** 2, rel=1e-9)
    parts["loss"].backward()
    assert float(y_q.grad[0].abs().sum()) > 0 and float(y_q.grad[1].abs().sum()) == 0.0


def test_openmm_potential_matches_torch_energy_and_gradient(dimer_data):
    from openmm_flashmd.data.guess import data_system
    from openmm_flashmd.train.openmm_system import OpenMMPotential

    data = load_trajectories(dimer_data)
    potential = OpenMMPotential(data_system(data))
    x = torch.as_tensor(data.positions[0, 3], dtype=torch.float64) + 0.01 * torch.randn(8, 3, dtype=torch.float64)
    x_torch = x.clone().requires_grad_(True)
    x_openmm = x.clone().requires_grad_(True)
    e_torch = HarmonicDimerEnergy()(x_torch, torch.zeros(3, 3))
    e_openmm = potential(x_openmm, torch.zeros(3, 3, dtype=torch.float64))
    (3.0 * e_torch).backward()
    (3.0 * e_openmm).backward()
    assert e_openmm.dtype == torch.float64 and e_openmm.shape == ()
    assert float(e_openmm.detach()) == pytest.approx(float(e_torch.detach()), rel=1e-9)
    np.testing.assert_allclose(x_openmm.grad.numpy(), x_torch.grad.numpy(), rtol=1e-7, atol=1e-7)
    with pytest.raises(ValueError, match="8 particles"):
        potential(x[:4], torch.zeros(3, 3))


def test_openmm_potential_of_a_rotated_periodic_box():
    """A rotated (or reflected) box, as training's random rotations make it: the same energy, and
    the forces rotated with it."""
    from openmm_flashmd.data.dataset import random_orthogonal
    from openmm_flashmd.systems import rigid_water_box
    from openmm_flashmd.train.openmm_system import OpenMMPotential

    built = rigid_water_box(n_molecules=32)
    potential = OpenMMPotential(built.system)
    x = torch.as_tensor(built.positions.value_in_unit(unit.nanometer), dtype=torch.float64)
    box = torch.as_tensor(np.array([v.value_in_unit(unit.nanometer) for v in built.system.getDefaultPeriodicBoxVectors()]))
    energy, forces = potential.evaluate(x, box)
    for rotation in random_orthogonal(2, torch.Generator().manual_seed(3)):  # one proper, one improper
        x_rot = (x @ rotation.T).requires_grad_(True)
        e_rot = potential(x_rot, box @ rotation.T)
        e_rot.backward()
        assert float(e_rot.detach()) == pytest.approx(float(energy), rel=1e-6)
        np.testing.assert_allclose(-x_rot.grad.numpy(), (forces @ rotation.T).numpy(), atol=1e-3 * float(forces.abs().max()))


# -------------------------------------------------------------------------------- CLI

def test_cli_generate_train_evaluate(tmp_path, capsys):
    system, top, pos = diatomics(n_mol=2)
    xml = tmp_path / "system.xml"
    xml.write_text(openmm.XmlSerializer.serialize(system))
    pdb = tmp_path / "start.pdb"
    with open(pdb, "w") as f:
        app.PDBFile.writeFile(top, pos * unit.nanometer, f)
    data = str(tmp_path / "d.h5")
    gen = ["generate", data, "--system", str(xml), "--structure", str(pdb), "--temperature", "300",
           "--n-segments", "4", "--segment-length", "0.1", "--thermalize", "0.2", "--decorrelate", "0.05",
           "--platform", "Reference", "--quiet"]
    assert main(gen + ["--max-new-segments", "2"]) == 0
    assert main(gen) == 1  # exists
    assert "resume" in capsys.readouterr().err
    assert main(["generate", data, "--resume", "--quiet"]) == 0
    assert load_trajectories(data).n_segments == 4

    run = str(tmp_path / "run")
    sets = [f"--set={k}={v}" for k, v in _quick(**{"training.max_steps": 10, "training.validate_every": 5}).items()]
    assert main(["train", data, run, "--stride", "0.016", "--device", "cpu", "--quiet"] + sets) == 0
    assert "model:" in capsys.readouterr().out
    assert main(["train", data, run, "--stride", "0.016", "--quiet"] + sets) == 1
    assert main(["train", data, run, "--stride", "0.010", "--overwrite", "--quiet"] + sets) == 1
    assert "multiple" in capsys.readouterr().err
    assert main(["evaluate", f"{run}/model.pt", data, "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "free flight" in out and (tmp_path / "e.json").exists()
    assert main(["evaluate", f"{run}/model.pt", data, "--segments", "0,1", "--max-pairs", "0"]) == 0


@pytest.mark.slow
def test_ddp_two_cpu_processes(dimer_data, tmp_path):
    """torchrun + gloo on CPU: two ranks train in lock step and rank 0 exports."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from flashmd_data_helpers import TINY_MODEL\n"
        "from openmm_flashmd.train import train\n"
        "o = dict(TINY_MODEL)\n"
        "o.update({'training.max_steps': 10, 'training.validate_every': 5, 'training.batch_size': 8,\n"
        "          'data.validation_fraction': 0.25})\n"
        f"r = train({str(dimer_data)!r}, {str(tmp_path / 'run')!r}, {STRIDE}, overrides=o, progress=False,\n"
        "          device='cpu')\n"
        "import os, pathlib\n"  # one file per rank: two ranks printing at once can interleave on stdout
        f"pathlib.Path({str(tmp_path)!r}, 'result' + os.environ['RANK']).write_text(f'RESULT {{r.steps}} {{r.best_validation_loss}}')\n"
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node=2", str(script)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [path.read_text().split()[1:] for path in sorted(tmp_path.glob("result*"))]
    assert len(results) == 2 and results[0] == results[1]
    assert (tmp_path / "run" / "model.pt").exists()


def test_kinetic_energy_loss_compares_each_element():
    from openmm_flashmd.train.trainer import _Losses

    masses = torch.tensor([1.0, 16.0, 1.0], dtype=torch.float64)
    numbers = torch.tensor([1, 8, 1])
    scales = {"dq_scale": 1.0, "p_scale": 1.0}
    losses = _Losses({"positions": 1, "velocities": 1, "energy": 0, "kinetic_energy": 2.0}, scales, masses, 300.0,
                     None, numbers)
    q = torch.zeros(2, 3, 3, dtype=torch.float64)
    v = torch.randn(2, 3, 3, dtype=torch.float64)
    batch = {"positions": q, "new_positions": q, "velocities": v, "new_velocities": v}
    t_p = v * masses.sqrt().view(1, -1, 1)
    exact = losses(torch.zeros_like(q), t_p, batch)
    assert float(exact["loss_ke"]) == 0.0
    damped = t_p.clone()
    damped[:, [0, 2]] *= 0.9  # hydrogens keep 81 % of their kinetic energy, oxygen all of it
    parts = losses(torch.zeros_like(q), damped, batch)
    assert float(parts["loss_ke"]) == pytest.approx(0.5 * 0.19 ** 2)
    assert float(parts["loss"]) == pytest.approx(float(parts["loss_p"]) + 2.0 * 0.5 * 0.19 ** 2)
    plain = _Losses({"positions": 1, "velocities": 1, "energy": 0}, scales, masses, 300.0, None, numbers)
    assert "loss_ke" not in plain(torch.zeros_like(q), damped, batch)


def test_rollout_loss_applies_the_model_to_its_own_predictions(dimer_data, tmp_path):
    """The rollout term is the first stride's loss for strides 2..R of the model fed its own
    output: recomputed here by calling the model by hand; a training with it logs the term."""
    from openmm_flashmd.data.dataset import StridePairs
    from openmm_flashmd.train.trainer import _Losses, _ScaledForward

    res = train(dimer_data, tmp_path / "rollout", STRIDE, overrides=_quick(**{"loss.rollout": 0.5,
                "loss.rollout_strides": 3}), device="cpu", progress=False, export=False)
    rows = list(csv.DictReader(open(tmp_path / "rollout" / "log.csv")))
    assert res.steps == 20 and all(float(r["train_loss_rollout"]) > 0 for r in rows)
    for r in rows:  # the best model is chosen by the loss it trains on, rollout included
        assert float(r["val_loss_rollout"]) > 0
        assert float(r["val_loss"]) == pytest.approx(float(r["val_loss_q"]) + float(r["val_loss_p"])
                                                     + 0.5 * float(r["val_loss_rollout"]), rel=1e-6)
    ckpt = torch.load(tmp_path / "rollout" / "checkpoint.pt", weights_only=False)
    model = model_from_checkpoint(tmp_path / "rollout" / "checkpoint.pt").requires_grad_(False)
    data = load_trajectories(dimer_data)
    batch = StridePairs(data, STRIDE, time_reversal=True, rollout=3, dtype=torch.float32).get_batch([0, 3, 200])
    masses = torch.as_tensor(data.masses, dtype=torch.float32)
    numbers = torch.as_tensor(data.atomic_numbers)
    y_q, y_p, later = _ScaledForward(model, masses, numbers)(batch)
    later_q, later_v = later["rollout_q"], later["rollout_v"]
    q, v = batch["positions"], batch["velocities"]
    for j in range(3):
        q_next, v_next = model.forward_batch(q, v, masses, numbers, batch["box"])
        if j:
            torch.testing.assert_close(later_q[:, j - 1], q_next, atol=1e-6, rtol=0)
            torch.testing.assert_close(later_v[:, j - 1], v_next, atol=1e-5, rtol=1e-6)
        q, v = q_next, v_next
    scales = ckpt["scales"]
    parts = _Losses({"positions": 1, "velocities": 1, "energy": 0, "rollout": 0.5}, scales, masses, 300.0,
                    None)(y_q, y_p, batch, later)
    sqrt_m = masses.sqrt().view(1, 1, -1, 1)
    expected = (((later_q - batch["rollout_positions"]) * sqrt_m) ** 2).mean() / scales["dq_scale"] ** 2 \
        + (((later_v - batch["rollout_velocities"]) * sqrt_m) ** 2).mean() / scales["p_scale"] ** 2
    assert float(parts["loss_rollout"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(parts["loss"]) == pytest.approx(float(parts["loss_q"] + parts["loss_p"] + 0.5 * expected), rel=1e-5)
    with pytest.raises(ValueError, match="rollout_strides"):
        load_hypers(overrides={"loss.rollout_strides": 1})


def test_resume_rewrites_a_log_written_with_other_columns(dimer_data, tmp_path):
    """A run started by a version whose log had other columns resumes with today's header,
    its earlier rows kept under it (missing values: nan)."""
    out = tmp_path / "run"
    train(dimer_data, out, STRIDE, overrides=_quick(), device="cpu", progress=False, stop_after=10)
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    older = [k for k in rows[0] if k != "val_loss_rollout"]
    with open(out / "log.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, older, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    train(dimer_data, out, STRIDE, overrides=_quick(), device="cpu", progress=False, resume=True, export=False)
    with open(out / "log.csv", newline="") as f:
        after = list(csv.DictReader(f))
    assert [r["step"] for r in after] == ["10", "20"]
    assert after[0]["val_loss_rollout"] == "nan" and after[0]["val_loss"] == rows[0]["val_loss"]


def test_ctrl_c_says_where_training_stopped_and_resume_drops_later_log_rows(dimer_data, tmp_path, capsys,
                                                                            monkeypatch):
    """Ctrl-C names the step and the last checkpoint; log rows written after that checkpoint (a run
    killed between a validation row and its checkpoint) are dropped on resume, not repeated."""
    out = tmp_path / "run"
    overrides = _quick(**{"training.validate_every": 5, "training.checkpoint_every": 10})
    calls = {"n": 0}
    step = torch.optim.AdamW.step

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 17:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", interrupted)
    args = ["train", str(dimer_data), str(out), "--stride", str(STRIDE), "--device", "cpu", "--quiet"]
    args += [f"--set={k}={v}" for k, v in overrides.items()]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 16 of 20; the last checkpoint" in err and "is at step 10" in err and "--resume" in err
    assert [int(r["step"]) for r in csv.DictReader(open(out / "log.csv"))] == [5, 10, 15]
    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    assert main(args + ["--resume"]) == 0
    assert [int(r["step"]) for r in csv.DictReader(open(out / "log.csv"))] == [5, 10, 15, 20]


class _ScaledMap(torch.nn.Module):
    """A stride map on mass-scaled outputs for the training wrapper: q' = q + v tau, v' = c v
    (c = 1: free flight, exactly time-reversible)."""

    def __init__(self, tau, c):
        super().__init__()
        self.tau, self.c = tau, c

    def forward_scaled_batch(self, q, v, masses, numbers, box, *guess):
        sqrt_m = masses.sqrt().view(1, -1, 1)
        return v * self.tau * sqrt_m, self.c * v * sqrt_m


def test_reversal_loss_is_zero_for_a_reversible_map_and_exact_for_a_damped_one(dimer_data):
    """The return stride feeds the model its own prediction with negated velocities: free flight
    comes back exactly (L_T = 0 whatever the data); a map that damps velocities by c comes back
    short by (1 - c) v tau with velocities -c^2 v, and L_T is that error in the loss's scales."""
    from openmm_flashmd.data.dataset import StridePairs
    from openmm_flashmd.train.trainer import _Losses, _ScaledForward

    data = load_trajectories(dimer_data)
    batch = StridePairs(data, STRIDE, time_reversal=True, dtype=torch.float64).get_batch([0, 7, 150, 400])
    masses = torch.as_tensor(data.masses)
    numbers = torch.as_tensor(data.atomic_numbers)
    scales = {"dq_scale": 0.01, "p_scale": 0.5}
    weights = {"positions": 1, "velocities": 1, "energy": 0, "reversal": 2.0}
    q, v, sqrt_m = batch["positions"], batch["velocities"], masses.sqrt().view(1, -1, 1)
    for c in (1.0, 0.9):
        y_q, y_p, later = _ScaledForward(_ScaledMap(STRIDE, c), masses, numbers, reversal=True)(batch)
        torch.testing.assert_close(later["return_q"], q + (1 - c) * v * STRIDE)
        torch.testing.assert_close(later["return_v"], -c * c * v)
        parts = _Losses(weights, scales, masses, 300.0, None)(y_q, y_p, batch, later)
        expected = ((((1 - c) * v * STRIDE * sqrt_m) ** 2).mean() / 0.01 ** 2
                    + (((1 - c * c) * v * sqrt_m) ** 2).mean() / 0.5 ** 2)
        assert float(parts["loss_reversal"]) == pytest.approx(float(expected), abs=1e-12)
        assert float(parts["loss"]) == pytest.approx(float(parts["loss_q"] + parts["loss_p"] + 2.0 * expected))
    _, _, later = _ScaledForward(_ScaledMap(STRIDE, 0.9), masses, numbers)(batch)
    assert later == {}  # no return stride unless asked for


class _FrameBiasedMap(_ScaledMap):
    """Free flight plus a constant velocity kick ``b`` in the frame it is called in: equivariant
    exactly when ``b`` is zero."""

    def __init__(self, tau, b):
        super().__init__(tau, 1.0)
        self.b = torch.as_tensor(b, dtype=torch.float64)

    def forward_scaled_batch(self, q, v, masses, numbers, box, *guess):
        y_q, y_p = super().forward_scaled_batch(q, v, masses, numbers, box, *guess)
        return y_q, y_p + self.b * masses.sqrt().view(1, -1, 1)


def test_equivariance_loss_is_zero_for_an_equivariant_map_and_exact_for_a_frame_biased_one(dimer_data):
    """L_S compares the predictions for an item in its frame and in a randomly turned one (rotated
    back): zero for free flight, whatever the frame; for a kick b fixed in the model's frame the
    turned prediction's kick is R^T b, so L_S = <|(b - R^T b) sqrt(m)|^2> / p_scale^2 for the
    matrices R the generator draws."""
    from openmm_flashmd.data.dataset import StridePairs, random_orthogonal
    from openmm_flashmd.train.trainer import _Losses, _ScaledForward

    data = load_trajectories(dimer_data)
    batch = StridePairs(data, STRIDE, dtype=torch.float64).get_batch([0, 7, 150, 400])
    masses = torch.as_tensor(data.masses)
    numbers = torch.as_tensor(data.atomic_numbers)
    scales = {"dq_scale": 0.01, "p_scale": 0.5}
    weights = {"positions": 1, "velocities": 1, "energy": 0, "equivariance": 3.0}
    sqrt_m = masses.sqrt().view(1, -1, 1)
    y_q, y_p, later = _ScaledForward(_ScaledMap(STRIDE, 1.0), masses, numbers,
                                     rotations=torch.Generator().manual_seed(5))(batch)
    torch.testing.assert_close(later["rotated_q"], y_q)
    torch.testing.assert_close(later["rotated_p"], y_p)
    assert float(_Losses(weights, scales, masses, 300.0, None)(y_q, y_p, batch, later)["loss_equivariance"]) < 1e-20
    b = torch.tensor([0.3, -0.1, 0.2], dtype=torch.float64)
    y_q, y_p, later = _ScaledForward(_FrameBiasedMap(STRIDE, b), masses, numbers,
                                     rotations=torch.Generator().manual_seed(5))(batch)
    rot = random_orthogonal(4, torch.Generator().manual_seed(5))
    kick_turned = torch.einsum("bji,j->bi", rot, b)  # R^T b, one per item
    expected = ((((b.view(1, 1, 3) - kick_turned.view(4, 1, 3)) * sqrt_m) ** 2).mean() / 0.5 ** 2)
    parts = _Losses(weights, scales, masses, 300.0, None)(y_q, y_p, batch, later)
    assert float(parts["loss_equivariance"]) == pytest.approx(float(expected), rel=1e-10) and float(expected) > 0
    assert float(parts["loss"]) == pytest.approx(float(parts["loss_q"] + parts["loss_p"] + 3.0 * expected))
    _, _, later = _ScaledForward(_FrameBiasedMap(STRIDE, b), masses, numbers)(batch)
    assert later == {}  # no second frame unless asked for


def test_training_with_the_equivariance_loss_logs_it(dimer_data, tmp_path):
    res = train(dimer_data, tmp_path / "eq", STRIDE, overrides=_quick(**{"loss.equivariance": 1.0}), device="cpu",
                progress=False, export=False)
    rows = list(csv.DictReader(open(tmp_path / "eq" / "log.csv")))
    assert res.steps == 20 and all(float(r["train_loss_equivariance"]) > 0 for r in rows)


def test_training_with_the_reversal_loss_logs_it_and_keeps_the_validation_loss(dimer_data, tmp_path):
    res = train(dimer_data, tmp_path / "rev", STRIDE, overrides=_quick(**{"loss.reversal": 1.0}), device="cpu",
                progress=False, export=False)
    rows = list(csv.DictReader(open(tmp_path / "rev" / "log.csv")))
    assert res.steps == 20 and all(float(r["train_loss_reversal"]) > 0 for r in rows)
    for r in rows:  # the best model is still chosen by the one-stride loss
        assert float(r["val_loss"]) == pytest.approx(float(r["val_loss_q"]) + float(r["val_loss_p"]), rel=1e-6)
