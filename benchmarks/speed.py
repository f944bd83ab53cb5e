"""The speed case: FlashMD against MLIP molecular dynamics on the same potential.

For water boxes of several sizes, in one run and with interleaved repeats, this times

(a) MLIP-MD: an OpenMM System whose only potential is a PET energy model (our MLIP, a
    ``TorchForce`` made by :func:`openmm_flashmd.model.mlip.create_mlip_system`),
    integrated with ``LangevinMiddleIntegrator`` at 0.5 fs;
(b) FlashMD: ``FlashMDIntegrator`` with a PET stride model at 4, 8 and 16 fs, splitting
    "O F E O", the energy filter on the same MLIP ``TorchForce`` force group;

and reports the wall time per simulated ps, the speedup (a)/(b), the peak resident
memory during each method's steps, and the fitted scaling exponent ``time ~ N^a``.
It also times the bare PyTorch calls the two methods are made of (below), so the ratio
FlashMD step / (stride forward + MLIP energy) is the integrator's overhead per size, and
the bare calls' own speed-up is the physical limit ``L`` of a stride (``limit`` per size and
stride; ``speedup_over_limit`` = measured speed-up / L).

Both networks use the default ``PETHypers`` (the same backbone; parameter counts are
recorded) with **untrained (random) weights**: the time of a forward pass does not
depend on the weight values, but neighbour counts do depend on the geometry, so the
boxes are the lattice-built ``water_box`` structures, re-set before every timed block.

``--direct`` runs without OpenMM/openmm-torch (e.g. on a GPU machine whose torch is too
new for openmm-torch): it times, on ``--device``, the stride-model forward plus one MLIP
energy forward (what a FlashMD step computes; the energy before the stride is the one
after the previous stride) against the MLIP forward + backward (energy and forces: what
an MLIP-MD step computes), and converts both to time per simulated ps.

Each ``integrator.step(k)`` call pays once for what a run pays once per reporter interval:
MLIP-MD evaluates the forces of the re-set positions, ``FlashMDIntegrator.step`` the potential
energy before its first stride (it cannot know whether the Context changed since its last
call). So every repeat of an OpenMM method times two calls after re-setting the state,
``step(k)`` and ``step(3 k)`` (``k`` sized to about ``--target-block-s``, at least
``--min-steps``), and reports the step inside a run, ``step_s`` = (t(3k) - t(k)) / 2k, and the
start of a call, ``call_s`` = t(k) - k step_s. The bare PyTorch calls have no such start: their
``step_s`` is a block of about ``--target-block-s`` divided by its steps, timed right after one
untimed call of the same method, as each call in a run follows the one before (interleaved with
the other methods, the 3000-atom MLIP forward + backward otherwise paid about twice its in-run
time, likely for faulting its gigabytes of autograd buffers in again).

The bare calls run the networks as openmm-torch does: frozen TorchScript
(``torch.jit.freeze``), the MLIP's forces from ``energy.backward()`` on positions that require
grad, the stride model and the filter's energy under ``torch.no_grad`` (each use on its own
frozen copy, as each ``TorchForce`` holds its own). The untrained stride model moves a box away
from its lattice within a timed block (fewer neighbours within the cutoff, a cheaper forward), so in
OpenMM mode the bare FlashMD calls cycle through the states the FlashMD context's timed steps start
from (its strides k+1 .. 3k after the re-set, :func:`timed_states`), not the lattice; before, the
OpenMM step came out at 0.67-0.9x its bare calls at 96-300 atoms and 8-16 fs in every run, which
steepened FlashMD's fitted exponent. The re-set loads a checkpoint of the start, the thermostat's
random-number state included, so every timed block and :func:`timed_states` follow the same
trajectory (re-setting only positions and velocities, each block drew new Langevin kicks and the
random model took each somewhere else: the 16 fs OpenMM step came out at 1.09-1.14x the bare calls
on one such trajectory, ``results/speed_runs/speed_cpu_states_repeats5.json``; with the checkpoint
re-set 0.96-1.04x, ``results/speed_cpu.json``). In OpenMM mode each size runs in four fresh
processes, the MLIP-MD context, the FlashMD contexts, the bare MLIP-MD step, then the bare FlashMD
calls, so none holds another's memory (at 3000 atoms each needs about 8 GB) and the peak memory
is that of one method family; every process tunes glibc's malloc as a ``TorchForce`` does
(``openmm_flashmd.performance``). MLIP-MD has its processes to itself, as in an MLIP-MD run:
interleaved with the stride calls in one process, the 3000-atom MLIP forward + backward kept
page-faulting about 275 MiB per step after six settling rounds and took 7.1 s (median of five;
the OpenMM MLIP-MD step 5.2 s; ``results/speed_runs/speed_cpu_settled_repeats5.json``), alone
5.24 s without page faults (``speed_cpu_3000atoms_split_repeats5.json``); the OpenMM MLIP-MD step
beside the FlashMD contexts faulted 243 000 pages per step and took 6.2 s against the bare
step's 5.1 s (``speed_runs/speed_cpu_split_repeats5.json``). The speed-up and the limit L each come
from two processes. With ``--direct`` the two bare families run one after the other in the
benchmark's own process.

Usage::

    python benchmarks/speed.py                                  # CPU, OpenMM, default sizes
    python benchmarks/speed.py --sizes 32 --repeats 2 --target-block-s 0.2 --output /tmp/s.json
    python benchmarks/speed.py --direct --device cuda --sizes 32 333 3333 10000

Memory: peak resident set size (VmHWM, reset through ``/proc/self/clear_refs`` before
each timed block; ``resource.getrusage`` where that is unavailable). tracemalloc does
not see PyTorch's C++ allocations, so it is not used. On CUDA the peak allocated GPU
memory is reported too. Times in seconds unless the key says otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fit_exponent, issue14_goals, stack_info, summarize, write_json  # noqa: E402

DEFAULT_SIZES = [32, 100, 333, 1000]        # water molecules: 96, 300, 999, 3000 atoms
DEFAULT_STRIDES = [0.004, 0.008, 0.016]     # ps
MLIP_MD_TIMESTEP = 0.0005                   # ps
TEMPERATURE = 300.0                         # K
MASSES = {1: 1.008, 8: 15.999}              # Da


# ----------------------------------------------------------------------------- setup

def import_models():
    """(PETHypers, PETStrideModel, PETEnergyModel); works without OpenMM installed (then the
    model and systems packages are loaded without their OpenMM-importing ``__init__``)."""
    try:
        import openmm_flashmd  # noqa: F401  (torch before the openmm-torch plugins)
    except ImportError:
        # No OpenMM here (a torch-only GPU image): load the pure-PyTorch model modules
        # without running the package __init__, which imports OpenMM.
        import types

        root = Path(__file__).resolve().parent.parent / "openmm_flashmd"
        for name, path in (("openmm_flashmd", root), ("openmm_flashmd.model", root / "model"),
                           ("openmm_flashmd.systems", root / "systems")):
            if name not in sys.modules:
                module = types.ModuleType(name)
                module.__path__ = [str(path)]
                sys.modules[name] = module
    from openmm_flashmd.model.energy import PETEnergyModel
    from openmm_flashmd.model.pet import PETHypers, PETStrideModel

    return PETHypers, PETStrideModel, PETEnergyModel


def water_lattice(n_molecules: int, density: float = 0.997, seed: int = 0):
    """Positions [N, 3] nm, atomic numbers [N] and cubic box [3, 3] nm of the lattice-built box
    of :func:`openmm_flashmd.systems.water_box` (its numpy-only lattice, so without OpenMM)."""
    import_models()  # makes openmm_flashmd.systems importable without OpenMM
    from openmm_flashmd.systems.lattice import water_lattice as lattice

    positions, edge = lattice(n_molecules, density, seed)
    return positions, np.array([8, 1, 1] * n_molecules), np.eye(3) * edge


def make_models(strides: Sequence[float], dtype: torch.dtype, device: torch.device, seed: int = 0):
    """Scripted stride models (one per stride) and the scripted MLIP, default hypers, random weights."""
    PETHypers, PETStrideModel, PETEnergyModel = import_models()
    hypers = PETHypers()
    torch.manual_seed(seed)
    energy = PETEnergyModel(hypers, [1, 8], periodic=True).to(dtype).eval()
    strides_models = {}
    for stride in strides:
        torch.manual_seed(seed + 1)  # the same weights for every stride
        strides_models[stride] = PETStrideModel(hypers, stride, [1, 8], MASSES, periodic=True).to(dtype).eval()
    info = {
        "hypers": hypers.to_dict(), "dtype": str(dtype).replace("torch.", ""), "untrained_weights": True,
        "stride_model_parameters": sum(p.numel() for p in next(iter(strides_models.values())).parameters()),
        "mlip_parameters": sum(p.numel() for p in energy.parameters()),
    }
    return ({s: torch.jit.script(m).to(device) for s, m in strides_models.items()},
            torch.jit.script(energy).to(device), info)


# ---------------------------------------------------------------------------- memory

def reset_peak_memory(device: torch.device) -> bool:
    """Reset the peak-RSS counter of this process (and CUDA's); False if RSS cannot be reset."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_memory(device: torch.device) -> Dict[str, float]:
    """Peak RSS (MiB) since the last reset (VmHWM; else getrusage's lifetime maximum)
    and, on CUDA, the peak allocated GPU memory (MiB)."""
    out: Dict[str, float] = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    out["peak_rss_mib"] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    if "peak_rss_mib" not in out:
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if device.type == "cuda":
        out["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return out


def current_rss_mib() -> Optional[float]:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------- timing

class Method:
    """One thing to time: ``reset()`` re-sets the state, ``run(k)`` advances ``k`` steps of
    ``sim_ps_per_step`` simulated ps each."""

    def __init__(self, name: str, sim_ps_per_step: float, run: Callable[[int], None],
                 reset: Callable[[], None] = lambda: None, sync: Callable[[], None] = lambda: None,
                 per_call: bool = False):
        self.name, self.sim_ps_per_step = name, sim_ps_per_step
        self._run, self.reset, self.sync = run, reset, sync
        self.per_call = per_call  # each run(k) pays a start: time step(k) and step(3k) (module docstring)
        self.steps = 1
        self.min_steps = 1  # fewest steps in a timed block
        self.samples: List[float] = []
        self.call_samples: List[float] = []
        self.warmup_s: List[float] = []
        self.last_faults = 0.0
        self.faults: List[float] = []  # minor page faults per step of each timed block
        self.memory: Dict[str, float] = {}

    def block(self, steps: Optional[int] = None) -> float:
        """Seconds per step of one ``run(steps)`` call (default ``self.steps``); the call's minor
        page faults per step go to ``last_faults``."""
        steps = steps or self.steps
        self.sync()
        faults = minor_faults()
        start = time.perf_counter()
        self._run(steps)
        self.sync()
        elapsed = time.perf_counter() - start
        self.last_faults = (minor_faults() - faults) / steps
        return elapsed / steps

    def timed_repeat(self) -> None:
        """One timed repeat from the re-set state: ``step_s`` into ``samples`` and, for a
        per-call method, the start of a call into ``call_samples``."""
        self.reset()
        if not self.per_call:
            self.block(1)  # untimed: a call without a start of its own follows the one before (docstring)
            self.samples.append(self.block())
            self.faults.append(self.last_faults)
            return
        short = self.block()
        self.reset()
        long = self.block(3 * self.steps)
        self.faults.append(self.last_faults)
        step = (3 * long - short) / 2.0  # (t(3k) - t(k)) / 2k, from the per-step block times
        self.samples.append(step)
        self.call_samples.append(self.steps * (short - step))


#: A block is settled when its steps page-fault at most this many times each (4 KiB pages: 1 MiB).
SETTLED_FAULTS_PER_STEP = 256
#: Most untimed interleaved rounds spent settling before the timed ones (see :func:`measure`).
MAX_SETTLE_ROUNDS = 6


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(methods: Sequence[Method], repeats: int, warmup: int, target_block_s: float, max_steps: int,
            device: torch.device) -> int:
    """Warm up each method, size its timed blocks to about ``target_block_s`` (at least its
    ``min_steps`` steps), settle, then time ``repeats`` rounds, the methods interleaved within
    each round. Returns the number of settling rounds.

    Warm-up: at least ``warmup`` single steps, continued (up to ``3 * warmup``) while the
    last step is more than 30 % slower than the fastest so far (TorchScript's profiling
    executor re-optimises the graphs during the first calls of every new input shape).
    Settling: untimed interleaved rounds of timed-size blocks until no block page-faults more
    than :data:`SETTLED_FAULTS_PER_STEP` (at most :data:`MAX_SETTLE_ROUNDS`). The heap of a
    process that alternates the methods grows over several rounds before their freed blocks
    fit each other, and a timed repeat that still faults is slower by its faults (the 5.0-7.4 s
    spread of the 3000-atom bare MLIP step in the first runs): a run pays that once, its steps
    after it do not. Some 3000-atom blocks still fault after many rounds (the bare MLIP step
    interleaved with the stride calls, about 275 MiB per step after six, the reason it now has a
    process of its own), so the rounds are capped and each timed block's faults are recorded
    (``minor_faults_per_step``).
    """
    for m in methods:
        m.reset()
        m.steps = 1
        times: List[float] = []
        while len(times) < max(1, 3 * warmup):
            times.append(m.block())
            if len(times) >= max(1, warmup) and times[-1] <= 1.3 * min(times[:-1] or times):
                break
        m.warmup_s = times
        m.steps = int(min(max_steps, max(m.min_steps, math.ceil(target_block_s / max(min(times), 1e-9)))))
    settle_rounds = 0
    while settle_rounds < MAX_SETTLE_ROUNDS:
        settle_rounds += 1
        for m in methods:
            m.reset()
            m.block()
        if all(m.last_faults <= SETTLED_FAULTS_PER_STEP for m in methods):
            break
    for _ in range(repeats):
        for m in methods:
            reset_peak_memory(device)
            m.timed_repeat()
            for key, value in peak_memory(device).items():
                m.memory[key] = max(m.memory.get(key, 0.0), value)
    return settle_rounds


def method_record(m: Method) -> Dict[str, Any]:
    step = summarize(m.samples)
    calls = {"call_s": summarize(m.call_samples)} if m.call_samples else {}
    return {"step_s": step, **calls, "minor_faults_per_step": summarize(m.faults), "steps_per_block": m.steps,
            "primed": not m.per_call, "warmup_step_s": m.warmup_s, "sim_ps_per_step": m.sim_ps_per_step,
            "wall_s_per_simulated_ps": step["median"] / m.sim_ps_per_step, **m.memory}


# ----------------------------------------------------------------- bare PyTorch calls

def bare_methods(stride_models: Dict[float, torch.nn.Module], energy: torch.nn.Module, positions: np.ndarray,
                 numbers: np.ndarray, box: np.ndarray, dtype: torch.dtype, device: torch.device,
                 prefix: str = "", with_mlip_md: bool = True,
                 states: Optional[Dict[float, Tuple[np.ndarray, np.ndarray]]] = None) -> List[Method]:
    """The PyTorch calls of one MLIP-MD step (energy + forces; unless ``with_mlip_md`` is False)
    and of one FlashMD step per stride model (stride forward + MLIP energy), timed without OpenMM,
    on frozen copies of the networks as openmm-torch runs them (module docstring). The calls start
    from ``positions`` (nm) with thermal velocities, or, for a stride in ``states`` (positions
    [S, N, 3] nm, velocities [S, N, 3] nm/ps), cycle through those S states, one per call."""
    md_energy = torch.jit.freeze(energy.eval()) if with_mlip_md else None
    filter_energy = torch.jit.freeze(energy.eval()) if stride_models else None  # each TorchForce its own copy
    stride_models = {stride: torch.jit.freeze(model.eval()) for stride, model in stride_models.items()}
    gen = torch.Generator().manual_seed(0)
    pos = torch.as_tensor(positions, dtype=dtype).to(device)
    z = torch.as_tensor(numbers, dtype=torch.long).to(device)
    cell = torch.as_tensor(box, dtype=dtype).to(device)
    m = torch.tensor([MASSES[int(a)] for a in numbers], dtype=dtype)
    vel = (torch.randn(len(numbers), 3, generator=gen, dtype=torch.float64).to(dtype)
           * torch.sqrt(0.008314462618 * TEMPERATURE / m).unsqueeze(1)).to(device)
    m = m.to(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    out = []
    if with_mlip_md:
        def mlip_md(k: int) -> None:
            for _ in range(k):
                x = pos.detach().requires_grad_(True)
                md_energy(x, z, cell).backward()
        out.append(Method(prefix + "mlip_md", MLIP_MD_TIMESTEP, mlip_md, sync=sync))
    for stride, model in stride_models.items():
        if states and stride in states:
            cycle = [(torch.as_tensor(x, dtype=dtype).to(device), torch.as_tensor(v, dtype=dtype).to(device))
                     for x, v in zip(*states[stride])]
        else:
            cycle = [(pos, vel)]
        def flashmd(k: int, model=model, states_in_turn=itertools.cycle(cycle)) -> None:
            with torch.no_grad():
                for _ in range(k):
                    x, v = next(states_in_turn)
                    new_pos, _ = model(x, v, m, z, cell)
                    filter_energy(new_pos, z, cell)
        out.append(Method(f"{prefix}flashmd_{stride:g}", stride, flashmd, sync=sync))
    return out


def timed_states(method: "Method") -> Tuple[np.ndarray, np.ndarray]:
    """Positions and velocities (nm, nm/ps; [2k, N, 3]) of an OpenMM FlashMD method's context
    before each of the strides its timed step covers: strides k+1 .. 3k after a re-set, where
    ``step_s`` = (t(3k) - t(k)) / 2k (module docstring), k its steps per timed block."""
    from openmm import unit

    integrator = method.context.getIntegrator()
    method.reset()
    integrator.step(method.steps)
    positions, velocities = [], []
    for _ in range(2 * method.steps):
        state = method.context.getState(getPositions=True, getVelocities=True)
        positions.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
        velocities.append(state.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond))
        integrator.step(1)
    return np.asarray(positions, dtype=np.float32), np.asarray(velocities, dtype=np.float32)


# ------------------------------------------------------------------------ OpenMM runs

def openmm_methods(n_molecules: int, stride_models, energy, platform_name: str, seed: int,
                   with_mlip_md: bool = True) -> Tuple[List[Method], Tuple[Any, ...]]:
    import openmm
    from openmm import unit

    from openmm_flashmd import FlashMDIntegrator
    from openmm_flashmd.model.mlip import create_mlip_system
    from openmm_flashmd.systems import water_box

    water = water_box(n_molecules=n_molecules, seed=seed)
    platform = openmm.Platform.getPlatformByName(platform_name)
    positions = water.positions
    box = water.topology.getPeriodicBoxVectors()
    methods = []

    def context_method(name, sim_ps, system, integrator):
        context = openmm.Context(system, integrator, platform)
        context.setPeriodicBoxVectors(*box)
        context.setPositions(positions)
        context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, seed + 1)
        start = context.createCheckpoint()  # with the thermostat's random-number state

        def reset():
            context.loadCheckpoint(start)

        method = Method(name, sim_ps, integrator.step, reset, per_call=True)
        method.context = context  # keep it alive
        return method

    md_system = create_mlip_system(water.topology, energy)
    if with_mlip_md:
        methods.append(context_method(
            "mlip_md", MLIP_MD_TIMESTEP, md_system,
            openmm.LangevinMiddleIntegrator(TEMPERATURE * unit.kelvin, 1.0 / unit.picosecond,
                                            MLIP_MD_TIMESTEP * unit.picosecond)))
    mlip_groups = {md_system.getForce(i).getForceGroup() for i in range(md_system.getNumForces())
                   if not isinstance(md_system.getForce(i), openmm.CMMotionRemover)}
    for stride, model in stride_models.items():
        system = create_mlip_system(water.topology, energy)
        integrator = FlashMDIntegrator(system, model, temperature=TEMPERATURE * unit.kelvin,
                                       collision_rate=1.0 / unit.picosecond, splitting="O F E O",
                                       energy_force_groups=mlip_groups, topology=water.topology,
                                       random_seed=seed + 2, max_displacement=None)
        methods.append(context_method(f"flashmd_{stride:g}", stride, system, integrator))
    pos_nm = np.asarray(positions.value_in_unit(unit.nanometer))
    box_nm = np.array([[v.value_in_unit(unit.nanometer) for v in row] for row in box])
    numbers = np.array([a.element.atomic_number for a in water.topology.atoms()])
    return methods, (pos_nm, numbers, box_nm, sorted(mlip_groups))


# ------------------------------------------------------------------------- one size

def measure_part(family: str, n_molecules: int, options: Dict[str, Any]) -> Dict[str, Any]:
    """Time one method family at one size: ``"bare-mlip"`` / ``"bare-stride"`` (the bare MLIP-MD
    step / the bare FlashMD calls, named ``bare_*`` in OpenMM mode) or ``"openmm-mlip"`` /
    ``"openmm-stride"`` (the MLIP-MD context / the FlashMD contexts).
    ``options``: the parsed command line as a dict. Returns the method records, the size's atoms
    and box edge (nm), the resident memory (MiB) before timing, the settling rounds and the
    networks' description (:func:`make_models`)."""
    import_models()  # without OpenMM, makes the package's pure modules importable
    from openmm_flashmd.performance import tune_malloc

    tune_malloc()  # as every TorchForce process does (module docstring)
    if options["threads"] is not None:
        torch.set_num_threads(options["threads"])
    device = torch.device(options["device"])
    dtype = getattr(torch, options["dtype"])
    stride_models, energy, model_info = make_models(sorted(options["strides"]), dtype, device, options["seed"])
    groups = None
    if family.startswith("bare"):
        positions, numbers, box = water_lattice(n_molecules, seed=options["seed"])
        methods = bare_methods({} if family == "bare-mlip" else stride_models, energy, positions, numbers, box,
                               dtype, device, "" if options["direct"] else "bare_", with_mlip_md=family == "bare-mlip",
                               states=options.get("states"))
    else:
        mlip = family == "openmm-mlip"
        methods, (positions, numbers, box, groups) = openmm_methods(
            n_molecules, {} if mlip else stride_models, energy, options["platform"], options["seed"], mlip)
        for method in methods:
            method.min_steps = options["min_steps"]
    baseline_rss = current_rss_mib()
    settle_rounds = measure(methods, options["repeats"], options["warmup"], options["target_block_s"],
                            options["max_steps"], device)
    states = ({m.sim_ps_per_step: timed_states(m) for m in methods} if family == "openmm-stride" else None)
    return {"family": family, "models": model_info, "methods": {m.name: method_record(m) for m in methods},
            "settle_rounds": settle_rounds, "states": states,
            "n_atoms": int(len(numbers)),
            "box_edge_nm": float(box[0, 0]), "rss_before_mib": baseline_rss, "energy_force_groups": groups}


def run_in_process(family: str, n_molecules: int, options: Dict[str, Any]) -> Dict[str, Any]:
    """:func:`measure_part` in a fresh (spawned) process, so its memory is its own."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure_part, (family, n_molecules, options))


# ------------------------------------------------------------------------------ main

def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES, help="water molecules per box")
    parser.add_argument("--strides", type=float, nargs="+", default=DEFAULT_STRIDES, help="FlashMD strides, ps")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps per method and size (more while the steps still speed up)")
    parser.add_argument("--target-block-s", type=float, default=1.0,
                        help="aim for timed blocks of about this many seconds (steps per block chosen from a probe)")
    parser.add_argument("--max-steps", type=int, default=200, help="most steps in one timed block")
    parser.add_argument("--min-steps", type=int, default=3,
                        help="fewest steps k of an OpenMM method's shorter timed call (see the docstring; with 1, "
                             "the 3000-atom MLIP-MD step drowned in the two calls' starts)")
    parser.add_argument("--platform", default="CPU", help="OpenMM platform (not with --direct)")
    parser.add_argument("--direct", action="store_true", help="PyTorch only, no OpenMM (see the docstring)")
    parser.add_argument("--device", default=None, help="--direct: torch device (default cuda if available, else cpu)")
    parser.add_argument("--no-bare", action="store_true", help="OpenMM mode: skip the bare PyTorch timings")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file (default benchmarks/results/speed_cpu.json; with --direct "
                             "benchmarks/results/speed_direct_<device>.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)

    if args.direct:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    else:
        device = torch.device("cpu")
        if args.device not in (None, "cpu"):
            parser.error("--device applies to --direct; OpenMM mode picks the device through --platform")
    args.device = str(device)
    output = args.output or Path(__file__).resolve().parent / "results" / (
        f"speed_direct_{device.type}.json" if args.direct else f"speed_{args.platform.lower()}.json")
    if output.exists() and not args.overwrite:
        print(f"{output} exists; pass --overwrite to replace it", file=sys.stderr)
        return 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    strides = sorted(args.strides)

    load_before = os.getloadavg()
    t_start = time.perf_counter()
    rows = []
    groups = None
    for n_molecules in args.sizes:
        # MLIP-MD apart from the FlashMD calls (module docstring); in OpenMM mode each family in a
        # fresh process, the bare FlashMD calls on the states the FlashMD contexts' timed steps ran
        # from; with --direct the bare families one after the other in this one
        families = ([] if args.direct else ["openmm-mlip", "openmm-stride"]) + (
            [] if args.no_bare and not args.direct else ["bare-mlip", "bare-stride"])
        parts, states = [], None
        for family in families:
            options = {**vars(args), "states": states}
            parts.append(measure_part(family, n_molecules, options) if args.direct
                         else run_in_process(family, n_molecules, options))
            states = states or parts[-1]["states"]
        part = {"methods": {k: v for p in parts for k, v in p["methods"].items()}, "models": parts[-1]["models"],
                "n_atoms": parts[-1]["n_atoms"], "box_edge_nm": parts[-1]["box_edge_nm"],
                "rss_before_mib": {p["family"]: p["rss_before_mib"] for p in parts},
                "settle_rounds": {p["family"]: p["settle_rounds"] for p in parts}}
        groups = next((p["energy_force_groups"] for p in parts if p["energy_force_groups"]), None)
        model_info = part["models"]
        records = part["methods"]
        row: Dict[str, Any] = {"n_molecules": n_molecules, "n_atoms": part["n_atoms"],
                               "box_edge_nm": part["box_edge_nm"], "rss_before_mib": part["rss_before_mib"],
                               "settle_rounds": part["settle_rounds"], "methods": records}
        if states:  # how many of the FlashMD context's states each stride's bare calls cycled through
            row["bare_states"] = {f"{s:g}": len(positions) for s, (positions, _) in states.items()}
        md = records["mlip_md"]["wall_s_per_simulated_ps"]
        row["speedup"] = {f"{s:g}": md / records[f"flashmd_{s:g}"]["wall_s_per_simulated_ps"] for s in strides}
        if not args.direct and not args.no_bare:
            row["integrator_overhead"] = {
                f"{s:g}": records[f"flashmd_{s:g}"]["step_s"]["median"]
                / records[f"bare_flashmd_{s:g}"]["step_s"]["median"] for s in strides}
            row["integrator_overhead"]["mlip_md"] = (records["mlip_md"]["step_s"]["median"]
                                                     / records["bare_mlip_md"]["step_s"]["median"])
        if not args.no_bare:
            # the physical limit L: bare MLIP-MD step (forward + backward) per simulated ps over the bare
            # stride forward + energy-only MLIP forward per simulated ps, and the measured speed-up over it
            bare = "" if args.direct else "bare_"
            bare_md = records[f"{bare}mlip_md"]["wall_s_per_simulated_ps"]
            row["limit"] = {f"{s:g}": bare_md / records[f"{bare}flashmd_{s:g}"]["wall_s_per_simulated_ps"]
                            for s in strides}
            row["speedup_over_limit"] = {k: row["speedup"][k] / row["limit"][k] for k in row["limit"]}
        rows.append(row)
        line = ", ".join(f"{s * 1000:g} fs {row['speedup'][f'{s:g}']:.1f}x" for s in strides)
        print(f"{row['n_atoms']:6d} atoms: MLIP-MD {md:10.1f} s/ps; FlashMD speedup {line}", flush=True)
    elapsed = time.perf_counter() - t_start

    sizes = [r["n_atoms"] for r in rows]
    exponents = {name: fit_exponent(sizes, [r["methods"][name]["step_s"]["median"] for r in rows])
                 for name in rows[0]["methods"]}
    stack = stack_info()
    stack["device"] = str(device)
    if device.type == "cuda":
        stack["gpu"] = torch.cuda.get_device_name(device)
        stack["cuda"] = torch.version.cuda
    payload = {
        "benchmark": "speed",
        "mode": "direct" if args.direct else "openmm",
        "description": (
            "MLIP-MD (LangevinMiddleIntegrator, 0.5 fs) vs FlashMD (FlashMDIntegrator, 'O F E O', energy filter on "
            "the MLIP TorchForce group) on lattice-built water boxes, interleaved repeats in one run"
            if not args.direct else
            "PyTorch only: MLIP forward+backward per 0.5 fs step vs stride forward + MLIP energy forward per stride"),
        "untrained_weights": True,
        "weights_note": "both networks have random (untrained) weights: the timing of a forward/backward pass does "
                        "not depend on weight values; no accuracy is implied",
        "bare_states": None if args.direct else (
            "the bare FlashMD calls cycle through the states the FlashMD context's timed steps start from (strides "
            "k+1..3k after the re-set); the bare MLIP-MD step runs on the lattice"),
        "platform": None if args.direct else args.platform,
        "device": str(device),
        "models": model_info,
        "mlip_md": {"integrator": "LangevinMiddleIntegrator", "timestep_ps": MLIP_MD_TIMESTEP,
                    "friction_per_ps": 1.0, "temperature_K": TEMPERATURE},
        "flashmd": {"strides_ps": strides, "splitting": "O F E O", "energy_force_groups": groups,
                    "collision_rate_per_ps": 1.0, "temperature_K": TEMPERATURE},
        "repeats": args.repeats, "warmup": args.warmup, "target_block_s": args.target_block_s,
        "min_steps": args.min_steps,
        "sizes_molecules": list(args.sizes),
        "results": rows,
        "scaling_exponents": exponents,
        "issue14_goals": None if args.direct else issue14_goals(rows, exponents, strides),
        "memory_note": "peak RSS (VmHWM) during each method's timed blocks (reset before each block) of the process "
                       "that timed it: in OpenMM mode one fresh process per size and family (bare MLIP-MD step, bare "
                       "FlashMD calls, MLIP-MD context, FlashMD contexts; rss_before_mib: that process before "
                       "timing, all its methods set up)",
        "stack": stack,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "total_wall_s": elapsed,
        "command": "python " + " ".join([sys.argv[0]] + list(argv if argv is not None else sys.argv[1:])),
    }
    write_json(output, payload, args.overwrite)
    print("scaling exponents: " + ", ".join(f"{k} {v:.2f}" for k, v in exponents.items() if v is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
