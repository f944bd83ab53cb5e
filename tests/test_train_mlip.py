"""MLIP training (train_mlip), its evaluation, export and use in OpenMM, and the CLI."""

import csv
import json

import h5py
import numpy as np
import pytest
import torch

import openmm_flashmd  # noqa: F401  (torch before openmm)
import openmm
from openmm import unit

from flashmd_data_helpers import FAST, TINY_MODEL, diatomics
from openmm_flashmd.cli import main
from openmm_flashmd.data.dataset import DataError, load_trajectories
from openmm_flashmd.data.generate import generate
from openmm_flashmd.data.schema import TrajectoryFormatError
from openmm_flashmd.train import (
    ModelDataMismatch, default_hypers, evaluate_mlip, format_mlip_table, load_hypers, model_from_checkpoint, train,
    train_mlip,
)
from openmm_flashmd.train.evaluate_mlip import energy_model_metadata
from openmm_flashmd.train.mlip import composition_energies


def _quick(**extra):
    o = dict(TINY_MODEL)
    o.update({"training.max_steps": 20, "training.validate_every": 10, "training.checkpoint_every": 10,
              "training.warmup_steps": 5, "training.batch_size": 4, "data.validation_fraction": 0.25,
              "data.frame_interval": 2})
    o.update(extra)
    return o


@pytest.fixture(scope="module")
def dimer_data(tmp_path_factory):
    system, top, pos = diatomics()
    path = tmp_path_factory.mktemp("mlip_data") / "dimers.h5"
    generate(path, system, pos, n_segments=12, **FAST)
    return path


@pytest.fixture(scope="module")
def trained(dimer_data, tmp_path_factory):
    """The tiny PET energy model trained for 300 steps on the carbon dimers."""
    out = tmp_path_factory.mktemp("mlip_runs") / "e2e"
    overrides = _quick(**{"training.max_steps": 300, "training.validate_every": 100,
                          "training.checkpoint_every": 150, "training.warmup_steps": 20,
                          "training.learning_rate": 3e-3, "training.batch_size": 8})
    return train_mlip(dimer_data, out, overrides=overrides, device="cpu", progress=False)


# ----------------------------------------------------------------------------- hypers

def test_mlip_hypers_and_composition_fit():
    d = default_hypers("mlip")
    assert set(d) == {"model", "training", "loss", "data"}
    assert set(d["loss"]) == {"energy", "forces"}
    h = load_hypers(None, ["loss.forces=10", "data.frame_interval=4"], task="mlip")
    assert h["loss"]["forces"] == 10 and h["data"]["frame_interval"] == 4
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        load_hypers(overrides={"loss.velocities": 1}, task="mlip")
    with pytest.raises(ValueError, match="frame_interval"):
        load_hypers(overrides={"data.frame_interval": 0}, task="mlip")
    with pytest.raises(ValueError, match="unknown training task"):
        default_hypers("dance")
    # least squares recovers per-element energies from mixed compositions
    counts = np.array([[2, 1], [4, 2], [1, 3], [0, 5]], dtype=float)
    e = counts @ np.array([-3.0, 7.0])
    np.testing.assert_allclose(composition_energies(counts, e), [-3.0, 7.0], atol=1e-10)


# ------------------------------------------------------------------------- end to end

def test_end_to_end_forces_beat_trivial_baselines(trained, dimer_data, tmp_path):
    out = trained.output_dir
    for name in ("hypers.yaml", "split.json", "log.csv", "loss_curve.png", "checkpoint.pt", "model.pt",
                 "validation.json"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["step"]) for r in rows] == [100, 200, 300]
    assert {"train_loss_energy", "train_loss_forces", "val_energy_rmse_per_atom", "val_force_rmse"} <= set(rows[0])
    assert float(rows[-1]["val_loss"]) < float(rows[0]["val_loss"])

    model = torch.jit.load(str(trained.model_path))
    meta = energy_model_metadata(model)
    data = load_trajectories(dimer_data)
    assert meta["elements"] == [6] and meta["periodic"] is False
    prov = meta["provenance"]
    assert prov["dataset_sha256"] == data.sha256
    assert "torch" in prov["package_versions"]
    split = json.loads((out / "split.json").read_text())
    assert prov["validation_segments"] == split["validation_segments"]
    # composition energy: the mean training energy per carbon
    train_segments = [list(data.segment_ids).index(s) for s in split["training_segments"]]
    mean_e = data.potential_energy[train_segments][:, ::2].mean()
    assert float(model.composition_energies[0]) * data.n_atoms == pytest.approx(mean_e, rel=1e-4, abs=1e-3)

    result = evaluate_mlip(trained.model_path, dimer_data, output_json=tmp_path / "eval.json")
    table = format_mlip_table(result)
    print("\n" + table)
    assert result["segments_used"].startswith("validation")
    assert json.loads((tmp_path / "eval.json").read_text())["n_frames"] == result["n_frames"]
    forces = result["forces"]["all"]
    # the zero-force baseline has relative error 1; the trained model is far below
    # (measured 1.6 % on 2 CPU cores; the threshold leaves room for run-to-run noise)
    assert forces["relative"] < 0.1, table
    assert result["energy"]["rmse_per_atom"] < 0.5 * result["energy"]["composition_baseline_rmse_per_atom"], table
    # the exported model reproduces the numbers measured at export
    assert forces["rmse"] == pytest.approx(meta["validation"]["errors"]["forces"]["all"]["rmse"], rel=1e-4)
    # rebuilt from the checkpoint: same model
    rebuilt = model_from_checkpoint(out / "checkpoint.pt")
    again = evaluate_mlip(rebuilt, dimer_data)
    assert again["forces"]["all"]["rmse"] == pytest.approx(forces["rmse"], rel=1e-5)


def test_exported_mlip_runs_in_openmm(trained, dimer_data):
    """export -> create_mlip_system -> OpenMM: energies and forces are the model's; MD steps run."""
    from openmm_flashmd.model.mlip import create_mlip_system

    data = load_trajectories(dimer_data)
    _, topology, _ = diatomics()
    system = create_mlip_system(topology, str(trained.model_path))
    assert system.getNumParticles() == data.n_atoms
    model = torch.jit.load(str(trained.model_path))
    x = data.positions[0, 3]
    e_ref, f_ref = model.energy_and_forces_batch(torch.as_tensor(x).unsqueeze(0).to(torch.float32),
                                                 torch.as_tensor(data.atomic_numbers), torch.zeros(1, 3, 3), False)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.0005 * unit.picosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(x * unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    assert energy == pytest.approx(float(e_ref[0].detach()), rel=1e-5, abs=1e-3)
    np.testing.assert_allclose(forces, f_ref[0].detach().numpy(), rtol=1e-4, atol=1e-2)
    # the learned forces are close to the reference ones at a reference frame
    err = np.sqrt(np.mean((forces - data.forces[0, 3]) ** 2)) / np.sqrt(np.mean(data.forces[0, 3] ** 2))
    assert err < 0.3
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(20)
    state = context.getState(getPositions=True, getEnergy=True)
    assert np.all(np.isfinite(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def test_periodic_argon_trains_and_runs(tmp_path):
    """A periodic system: training, export and a periodic TorchForce."""
    from openmm_flashmd.model.mlip import create_mlip_system
    from openmm_flashmd.systems import argon_box

    argon = argon_box(n_atoms=32)
    data = generate(tmp_path / "ar.h5", argon, n_segments=2, segment_length=0.02, thermalize=0.1, decorrelate=0.02,
                    timestep=0.002, record_interval=0.004, platform="Reference", progress=False)
    res = train_mlip(data, tmp_path / "run", overrides=_quick(**{"training.max_steps": 4, "data.validation_fraction": 0.5,
                                                                 "data.frame_interval": 1}),
                     device="cpu", progress=False)
    model = torch.jit.load(str(res.model_path))
    assert energy_model_metadata(model)["periodic"] is True
    tdata = load_trajectories(data)
    system = create_mlip_system(argon.topology, str(res.model_path))
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPeriodicBoxVectors(*tdata.box[0, 0])
    context.setPositions(tdata.positions[0, 0])
    energy = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    e_model = model(torch.as_tensor(tdata.positions[0, 0], dtype=torch.float32),
                    torch.as_tensor(tdata.atomic_numbers), torch.as_tensor(tdata.box[0, 0], dtype=torch.float32))
    assert energy == pytest.approx(float(e_model.detach()), rel=1e-5, abs=1e-3)
    integrator.step(3)


# ----------------------------------------------------------------------------- resume

def test_resume_continues_like_an_uninterrupted_run(dimer_data, tmp_path):
    const = {"training.scheduler": "constant"}
    full = train_mlip(dimer_data, tmp_path / "full", overrides=_quick(**const, **{"training.max_steps": 20}),
                      device="cpu", progress=False, export=False)
    part = tmp_path / "part"
    train_mlip(dimer_data, part, overrides=_quick(**const, **{"training.max_steps": 10}), device="cpu",
               progress=False, export=False)
    resumed = train_mlip(dimer_data, part, overrides={"training.max_steps": 20}, resume=True, device="cpu",
                         progress=False, export=False)
    assert resumed.steps == 20
    assert [int(r["step"]) for r in csv.DictReader(open(part / "log.csv"))] == [10, 20]
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["model_state"]
    b = torch.load(part / "checkpoint.pt", weights_only=False)["model_state"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert resumed.best_validation_loss == pytest.approx(full.best_validation_loss, rel=1e-5)
    with pytest.raises(ValueError, match="different 'loss'"):
        train_mlip(dimer_data, part, overrides={"loss.forces": 3.0}, resume=True, device="cpu", progress=False)


# ----------------------------------------------------------------------------- errors

def test_training_errors(dimer_data, tmp_path):
    run = tmp_path / "run"
    train_mlip(dimer_data, run, overrides=_quick(**{"training.max_steps": 2}), device="cpu", progress=False,
               export=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        train_mlip(dimer_data, run, overrides=_quick(), device="cpu", progress=False)
    train_mlip(dimer_data, run, overrides=_quick(**{"training.max_steps": 2}), overwrite=True, device="cpu",
               progress=False, export=False)
    # a stride-model run cannot be resumed as an MLIP run
    stride_run = tmp_path / "stride"
    stride_overrides = {k: v for k, v in _quick(**{"training.max_steps": 1}).items() if k != "data.frame_interval"}
    train(dimer_data, stride_run, 0.032, overrides=stride_overrides, device="cpu", progress=False, export=False)
    with pytest.raises(ValueError, match="'stride' run"):
        train_mlip(dimer_data, stride_run, resume=True, device="cpu", progress=False)

    no_forces, zero_forces, no_element = (tmp_path / f"{n}.h5" for n in ("noforces", "zeroforces", "noelement"))
    for path in (no_forces, zero_forces, no_element):
        path.write_bytes(dimer_data.read_bytes())
    with h5py.File(no_forces, "r+") as f:
        del f["forces"]
    with h5py.File(zero_forces, "r+") as f:
        f["forces"][...] = 0.0
    with h5py.File(no_element, "r+") as f:
        f["atomic_numbers"][3] = 0
    with pytest.raises(TrajectoryFormatError, match="forces"):
        train_mlip(no_forces, tmp_path / "r1", overrides=_quick(), device="cpu", progress=False)
    with pytest.raises(DataError, match="forces"):
        train_mlip(zero_forces, tmp_path / "r2", overrides=_quick(), device="cpu", progress=False)
    with pytest.raises(DataError, match="atomic number 0"):
        train_mlip(no_element, tmp_path / "r3", overrides=_quick(), device="cpu", progress=False)
    with pytest.raises(FileNotFoundError):
        train_mlip(tmp_path / "none.h5", tmp_path / "r4", overrides=_quick(), progress=False)


def test_evaluate_mlip_errors(trained, dimer_data, tmp_path):
    argon = generate(tmp_path / "ar.h5", "argon", n_segments=1, segment_length=0.02, thermalize=0.0,
                     decorrelate=0.0, timestep=0.002, record_interval=0.004, platform="Reference", progress=False)
    with pytest.raises(ModelDataMismatch, match="elements"):
        evaluate_mlip(trained.model_path, argon)
    (tmp_path / "exists.json").write_text("{}")
    with pytest.raises(FileExistsError):
        evaluate_mlip(trained.model_path, dimer_data, output_json=tmp_path / "exists.json")
    with pytest.raises(ValueError, match="not complete segments"):
        evaluate_mlip(trained.model_path, dimer_data, segments=[99])
    res = evaluate_mlip(trained.model_path, dimer_data, segments="all", max_frames=10)
    assert res["segments_used"] == "all" and res["n_frames"] == 10


# -------------------------------------------------------------------------------- CLI

def test_cli_train_mlip_and_evaluate_mlip(dimer_data, tmp_path, capsys):
    run = str(tmp_path / "run")
    sets = [f"--set={k}={v}" for k, v in _quick(**{"training.max_steps": 4, "training.validate_every": 2}).items()]
    assert main(["train-mlip", str(dimer_data), run, "--device", "cpu", "--quiet"] + sets) == 0
    out = capsys.readouterr().out
    assert "model:" in out and "zero-F RMS" in out
    assert main(["train-mlip", str(dimer_data), run, "--quiet"] + sets) == 1
    assert "overwrite" in capsys.readouterr().err
    assert main(["train-mlip", str(dimer_data), run, "--resume", "--quiet", "--device", "cpu",
                 "--set", "training.max_steps=6"]) == 0
    assert main(["evaluate-mlip", f"{run}/model.pt", str(dimer_data), "--json", str(tmp_path / "e.json")]) == 0
    assert "energy per atom" in capsys.readouterr().out and (tmp_path / "e.json").exists()
    assert main(["evaluate-mlip", f"{run}/model.pt", str(dimer_data), "--segments", "0,1", "--max-frames", "0"]) == 0


@pytest.mark.slow
def test_ddp_two_cpu_processes(dimer_data, tmp_path):
    """torchrun + gloo on CPU: forces by autograd inside DDP's forward, two ranks in lock step."""
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_train_mlip import _quick\n"
        "from openmm_flashmd.train import train_mlip\n"
        "o = _quick(**{'training.max_steps': 6, 'training.validate_every': 3})\n"
        f"r = train_mlip({str(dimer_data)!r}, {str(tmp_path / 'run')!r}, overrides=o, progress=False, device='cpu')\n"
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
