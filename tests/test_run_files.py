"""Run-data safety of simulate: resume continues exactly the recorded run, checkpoints are checked,
outputs are cut back to the checkpoint, overwrite clears, folders are locked, Ctrl-C resumes."""

import json

import mdtraj
import numpy as np
import openmm
import pytest

from openmm_flashmd import save_model
from openmm_flashmd.analysis.report import read_log
from openmm_flashmd.cli import main
from openmm_flashmd.model import FreeParticleStrideModel
from openmm_flashmd.run_files import OutputLock, RunFilesError, atomic_write
from openmm_flashmd.simulate import RunInterrupted, simulate

ARGON = {"system": "argon", "system_options": {"n_atoms": 27}, "platform": "Reference", "progress": False}


@pytest.fixture()
def free_model(tmp_path):
    return str(save_model(FreeParticleStrideModel(0.002), tmp_path / "free.pt"))


def _run(out, model, **kwargs):
    options = dict(ARGON, model=model, duration=0.04, report_interval=0.01, temperature=120.0, seed=7)
    options.update(kwargs)
    return simulate(out, **options)


def _final_positions(out):
    return mdtraj.load(str(out / "trajectory.dcd"), top=str(out / "topology.pdb")).xyz


def test_resume_continues_the_recorded_run_and_refuses_other_settings(tmp_path, free_model):
    out = tmp_path / "run"
    _run(out, free_model)
    # nothing but the folder and the new total: the system, model and temperature come from settings.json
    resumed = simulate(out, duration=0.08, resume=True, progress=False, platform="Reference")
    assert resumed.steps == 40 and list(read_log(out / "log.csv")["step"]) == [5 * k for k in range(1, 9)]
    settings = json.loads((out / "settings.json").read_text())
    assert settings["duration_ps"] == 0.08 and settings["system"] == "argon" and settings["temperature_K"] == 120.0
    with pytest.raises(ValueError, match=r"--temperature 150.0 \(the run has 120.0\)"):
        simulate(out, temperature=150.0, duration=0.1, resume=True, progress=False)
    with pytest.raises(ValueError, match="--system water-rigid"):
        simulate(out, system="water-rigid", resume=True, progress=False)
    assert main(["simulate", str(out), "--resume", "--seed", "3", "--quiet"]) == 1
    assert list(read_log(out / "log.csv")["step"])[-1] == 40  # refusals appended nothing


def test_a_truncated_checkpoint_is_refused_before_anything_is_appended(tmp_path, free_model, capsys):
    out = tmp_path / "run"
    _run(out, free_model)
    log_before, dcd_before = (out / "log.csv").read_bytes(), (out / "trajectory.dcd").read_bytes()
    data = (out / "checkpoint.chk").read_bytes()
    (out / "checkpoint.chk").write_bytes(data[: len(data) // 2])
    assert main(["simulate", str(out), "--resume", "--time", "0.08", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "does not match its record" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "log.csv").read_bytes() == log_before and (out / "trajectory.dcd").read_bytes() == dcd_before
    (out / "checkpoint.json").unlink()
    with pytest.raises(RunFilesError, match="checkpoint.json is missing"):
        simulate(out, duration=0.08, resume=True, progress=False)


def test_resume_cuts_torn_outputs_back_to_the_checkpoint_and_matches_an_uninterrupted_run(tmp_path, free_model):
    straight = tmp_path / "straight"
    _run(straight, free_model, duration=0.08)
    out = tmp_path / "run"
    _run(out, free_model)
    # a killed run wrote past its last checkpoint: half a frame and a partial log row
    with open(out / "trajectory.dcd", "ab") as handle:
        handle.write(b"\0" * 100)
    with open(out / "log.csv", "a") as handle:
        handle.write("25,0.05,-1")
    simulate(out, duration=0.08, resume=True, progress=False, platform="Reference")
    assert list(read_log(out / "log.csv")["step"]) == list(read_log(straight / "log.csv")["step"])
    assert np.array_equal(_final_positions(out), _final_positions(straight))  # bit-identical, 8 frames


def test_ctrl_c_checkpoints_and_the_resumed_run_is_identical(tmp_path, free_model, monkeypatch):
    straight = tmp_path / "straight"
    _run(straight, free_model, duration=0.08)
    out = tmp_path / "run"
    calls = {"n": 0}
    step = openmm.app.Simulation.step

    def interrupting_step(self, steps):
        calls["n"] += 1
        if calls["n"] == 3:
            step(self, 2)  # stopped between two report intervals
            raise KeyboardInterrupt
        return step(self, steps)

    monkeypatch.setattr(openmm.app.Simulation, "step", interrupting_step)
    with pytest.raises(RunInterrupted, match="interrupted at stride 12 of 40 .* --resume"):
        _run(out, free_model, duration=0.08)
    monkeypatch.setattr(openmm.app.Simulation, "step", step)
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 12
    simulate(out, resume=True, progress=False, platform="Reference")
    assert list(read_log(out / "log.csv")["step"]) == list(read_log(straight / "log.csv")["step"])
    assert np.array_equal(_final_positions(out), _final_positions(straight))


def test_overwrite_clears_the_old_run_and_refuses_foreign_folders(tmp_path, free_model):
    from openmm_flashmd import FlashMDError
    from toy_models import NaNAfterStrideModel

    out = tmp_path / "run"
    _run(out, free_model)
    assert (out / "temperature.png").exists()
    failing = str(save_model(NaNAfterStrideModel(0.002, 0.0), tmp_path / "nan.pt"))
    with pytest.raises(FlashMDError):
        _run(out, failing, fallback=False, ensemble="nve", temperature=None, overwrite=True)
    # the old run's checkpoint and plots are gone: the "last good" checkpoint is the new run's start
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 0 and not (out / "temperature.png").exists()
    assert json.loads((out / "settings.json").read_text())["model"] == failing

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="thesis.tex"):
        _run(mine, free_model, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "precious"


def test_a_folder_in_use_is_refused(tmp_path, free_model):
    out = tmp_path / "run"
    _run(out, free_model)
    with OutputLock(out):  # another run holds the folder
        with pytest.raises(RunFilesError, match="another process .* is writing to"):
            simulate(out, duration=0.08, resume=True, progress=False)
    simulate(out, duration=0.08, resume=True, progress=False, platform="Reference")  # released


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "settings.json"
    atomic_write(target, "old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    assert target.read_text() == "old"


@pytest.mark.parametrize("flag, value", [("--time", "-1"), ("--time", "nan"), ("--report-interval", "-1"),
                                         ("--collision-rate", "-5"), ("--temperature", "-50")])
def test_cli_refuses_non_positive_numbers(tmp_path, capsys, flag, value):
    assert main(["simulate", str(tmp_path / "run"), flag, value, "--quiet"]) == 1
    assert f"{flag} must be a positive finite number" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_gives_one_line_for_os_and_openmm_errors(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["simulate", str(blocker / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err


def test_evaluate_refuses_a_rigid_model_on_flexible_data():
    from types import SimpleNamespace

    from openmm_flashmd.train.evaluate import ModelDataMismatch, check_model_matches_data

    data = SimpleNamespace(atomic_numbers=np.array([8, 1, 1]), periodic=True, constraints_active=False, n_atoms=3,
                           element_masses=lambda: {})
    with pytest.raises(ModelDataMismatch, match="trained on data with constraints; these data are flexible"):
        check_model_matches_data({"provenance": {"constraints_active": True}}, data)
    check_model_matches_data({"provenance": {"constraints_active": False}}, data)


def test_a_truncated_training_checkpoint_gets_one_line(tmp_path):
    import torch

    from openmm_flashmd.train.engine import resume_hypers

    torch.save({"hypers": {}, "task": "stride", "weights": torch.zeros(1000)}, tmp_path / "checkpoint.pt")
    data = (tmp_path / "checkpoint.pt").read_bytes()
    (tmp_path / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checkpoint.pt is unreadable .truncated or corrupt.*start again with --overwrite"):
        resume_hypers(tmp_path, True, None, None, "stride")


def test_cli_names_the_line_of_a_yaml_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  cutoff: [0.3\n")
    assert main(["train", str(tmp_path / "missing.h5"), str(tmp_path / "out"), "--stride", "0.008",
                 "--hypers", str(bad)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "invalid YAML in" in err and "bad.yaml, line 3, column 1" in err


def test_generate_refuses_a_file_another_process_writes(tmp_path):
    from openmm_flashmd.data.generate import generate

    with OutputLock(tmp_path, ".data.h5.lock"):
        with pytest.raises(RunFilesError, match=r"another process .* \(lock .data.h5.lock\)"):
            generate(tmp_path / "data.h5", "argon", n_segments=1)
    assert not (tmp_path / "data.h5").exists()
