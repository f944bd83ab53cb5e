"""benchmarks/speed.py's judgement of issue 14's goals, its settling rounds and report.py's speed notes (the
timings themselves are benchmarks, not tests)."""

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from openmm import unit

from flashmd_data_helpers import ROOT, load_benchmark


def _row(n_atoms, overhead, over_limit):
    return {"n_atoms": n_atoms, "integrator_overhead": {"0.004": overhead, "0.016": 0.9},
            "speedup_over_limit": {"0.004": over_limit, "0.016": 1.1}}


def test_issue14_goals_take_the_worst_size_and_stride():
    speed = load_benchmark("speed")
    exponents = {"flashmd_0.004": 1.00, "bare_flashmd_0.004": 0.97, "flashmd_0.016": 0.90, "bare_flashmd_0.016": 0.96}
    goals = speed.issue14_goals([_row(96, 1.04, 0.95), _row(3000, 0.97, 0.88)], exponents, [0.004, 0.016])
    assert goals["step_over_bare"]["met"] and goals["step_over_bare"]["worst"] == pytest.approx(1.04)
    assert not goals["speedup_over_limit"]["met"] and goals["speedup_over_limit"]["n_atoms"] == 3000
    assert not goals["exponent_gap"]["met"] and goals["exponent_gap"]["worst"] == pytest.approx(-0.06)
    assert goals["exponent_gap"]["stride_ps"] == 0.016
    # one size has no exponent; a run without bare calls has no goals
    assert "exponent_gap" not in speed.issue14_goals([_row(96, 1.2, 1.0)], exponents, [0.004, 0.016])
    assert speed.issue14_goals([{"n_atoms": 96}], exponents, [0.004]) is None

    report = load_benchmark("report")
    line = report._issue14_goal("exponent_gap", goals["exponent_gap"])
    assert line == "FlashMD exponent − bare stride exponent within ± 0.05: worst -0.060 (16 fs), **not met**"


def test_timed_repeats_wait_until_the_interleaved_methods_stop_page_faulting(monkeypatch):
    speed = load_benchmark("speed")
    faults = {"total": 0}
    monkeypatch.setattr(speed, "minor_faults", lambda: faults["total"])

    def method(name, per_step_faults):
        """A method whose successive calls page-fault as listed, then not at all."""
        pending = list(per_step_faults)

        def run(k):
            faults["total"] += (pending.pop(0) if pending else 0) * k
        return speed.Method(name, 0.001, run)

    # one warm-up call each, then interleaved rounds until no block faults more than 256 pages per step
    methods = [method("quiet", []), method("growing", [10**6] * 3 + [10**5, 300, 0])]
    rounds = speed.measure(methods, repeats=2, warmup=1, target_block_s=0.0, max_steps=1, device=speed.torch.device("cpu"))
    assert rounds == 5  # after its warm-up call the second faulted 10**6, 10**6, 10**5, 300, then 0 per step
    assert [m.faults for m in methods] == [[0.0, 0.0], [0.0, 0.0]]
    assert speed.method_record(methods[1])["minor_faults_per_step"]["max"] == 0.0

    always = [method("leaking", [10**4] * 100)]
    assert speed.measure(always, repeats=1, warmup=1, target_block_s=0.0, max_steps=1,
                         device=speed.torch.device("cpu")) == speed.MAX_SETTLE_ROUNDS
    assert always[0].faults == [10**4]


def test_the_speed_table_names_the_blocks_still_page_faulting():
    report = load_benchmark("report")
    run = json.loads((ROOT / "benchmarks/results/speed_runs/speed_cpu_settled_repeats5.json").read_text())
    for row in run["results"]:
        for record in row["methods"].values():
            record["minor_faults_per_step"] = {"median": 0.0, "min": 0.0, "max": 0.0, "n": 5}
    prefix = "Timed blocks still page-faulting"
    assert not [line for line in report.render_speed(run, "run.json") if line.startswith(prefix)]
    faulted = copy.deepcopy(run)
    faulted["results"][-1]["methods"]["bare_mlip_md"]["minor_faults_per_step"]["median"] = 70508.0
    lines = [line for line in report.render_speed(faulted, "run.json") if line.startswith(prefix)]
    assert len(lines) == 1 and lines[0].endswith(": 3000 atoms: bare mlip md 7.05e+04.")


def test_direct_mode_runs_without_openmm(tmp_path):
    """``speed.py --direct`` is what a GPU image without OpenMM runs (issue 14): block OpenMM's import."""
    output = tmp_path / "direct.json"
    script = ("import runpy, sys; sys.modules['openmm'] = None; sys.path.insert(0, 'benchmarks'); "
              "runpy.run_path('benchmarks/speed.py', run_name='__main__')")
    args = ["--direct", "--device", "cpu", "--sizes", "32", "--strides", "0.016", "--repeats", "1", "--warmup", "1",
            "--target-block-s", "0.01", "--threads", "1", "--output", str(output)]
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(output.read_text())["results"][0]
    assert set(row["methods"]) == {"mlip_md", "flashmd_0.016"} and row["limit"]["0.016"] > 0
    assert set(row["settle_rounds"]) == {"bare-mlip", "bare-stride"}


def test_openmm_mode_times_each_family_in_its_own_process(tmp_path):
    """OpenMM mode end to end at 96 atoms: the bare MLIP-MD step, the bare FlashMD calls, the MLIP-MD
    context and the FlashMD contexts each settle in a process of their own, and the goals are judged."""
    output = tmp_path / "openmm.json"
    args = ["--sizes", "32", "--strides", "0.016", "--repeats", "1", "--warmup", "1", "--target-block-s", "0.01",
            "--min-steps", "1", "--threads", "1", "--output", str(output)]
    done = subprocess.run([sys.executable, "benchmarks/speed.py", *args], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(output.read_text())
    row = run["results"][0]
    assert set(row["settle_rounds"]) == set(row["rss_before_mib"]) == {
        "bare-mlip", "bare-stride", "openmm-mlip", "openmm-stride"}
    assert set(row["methods"]) == {"bare_mlip_md", "bare_flashmd_0.016", "mlip_md", "flashmd_0.016"}
    assert row["limit"]["0.016"] > 0 and row["integrator_overhead"]["0.016"] > 0
    assert set(run["issue14_goals"]) == {"step_over_bare", "speedup_over_limit"}  # one size: no exponents
    assert "states the FlashMD context's timed steps start from" in run["bare_states"]
    assert row["bare_states"] == {"0.016": 2 * row["methods"]["flashmd_0.016"]["steps_per_block"]}


def test_bare_stride_calls_cycle_through_the_timed_states(monkeypatch):
    """The bare FlashMD calls run the stride model on each given state in turn (the FlashMD context's
    own states in OpenMM mode), not on the lattice they would otherwise repeat."""
    speed = load_benchmark("speed")
    monkeypatch.setattr(torch.jit, "freeze", lambda module: module)  # plain modules that record their inputs
    seen = []

    class Recording(torch.nn.Module):
        def forward(self, x, v, m, z, cell):
            seen.append(float(x[0, 0]))
            return x, v

    class Energy(torch.nn.Module):
        def forward(self, x, z, cell):
            return x.sum()

    lattice = np.zeros((3, 3))
    states = (np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 3, 3), dtype=np.float32),
              np.zeros((4, 3, 3), dtype=np.float32))
    methods = speed.bare_methods({0.016: Recording()}, Energy(), lattice,
                                 np.array([8, 1, 1]), np.eye(3), torch.float32, torch.device("cpu"),
                                 with_mlip_md=False, states={0.016: states})
    methods[0].block(6)
    assert seen == [0.0, 1.0, 2.0, 3.0, 0.0, 1.0]
    seen.clear()
    lattice_only = speed.bare_methods({0.016: Recording()}, Energy(),
                                      lattice + 7.0, np.array([8, 1, 1]), np.eye(3), torch.float32,
                                      torch.device("cpu"), with_mlip_md=False)
    lattice_only[0].block(2)
    assert seen == [7.0, 7.0]


def test_a_reset_context_retraces_its_trajectory():
    """The OpenMM methods re-set to a checkpoint of the start, the thermostat's random numbers included:
    every timed block, and the states the bare calls cycle through, follow one trajectory."""
    speed = load_benchmark("speed")
    stride_models, energy, _ = speed.make_models([0.016], torch.float32, torch.device("cpu"))
    methods, _ = speed.openmm_methods(32, stride_models, energy, "Reference", seed=0)
    flashmd = next(m for m in methods if m.name == "flashmd_0.016")
    flashmd.steps = 2
    first, again = speed.timed_states(flashmd), speed.timed_states(flashmd)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0][0], first[0][1])  # the strides do move the atoms
    mlip_md = next(m for m in methods if m.name == "mlip_md")
    after = []
    for _ in range(2):
        mlip_md.reset()
        mlip_md.context.getIntegrator().step(3)
        state = mlip_md.context.getState(getVelocities=True)
        after.append(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
    np.testing.assert_array_equal(after[0], after[1])
