"""Tiny systems, settings and helpers shared by the tests."""

import importlib.util
from pathlib import Path
from typing import Tuple

import numpy as np

import openmm_flashmd  # noqa: F401  (torch before openmm)
import openmm
from openmm import app

ROOT = Path(__file__).resolve().parent.parent


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: PET hyper-parameters small enough for CPU tests.
TINY_MODEL = {
    "model.cutoff": 0.3, "model.cutoff_width": 0.05, "model.d_pet": 16, "model.d_node": 32,
    "model.d_feedforward": 32, "model.num_heads": 2, "model.num_attention_layers": 1, "model.num_gnn_layers": 1,
}


def diatomics(n_mol: int = 4, spacing: float = 1.0, k: float = 5.0e3, r0: float = 0.15, mass: float = 12.011,
              constrained: bool = False, seed: int = 0) -> Tuple[openmm.System, app.Topology, np.ndarray]:
    """``n_mol`` carbon dimers (harmonic bond ``k`` kJ/mol/nm^2, ``r0`` nm) ``spacing`` nm apart, in
    vacuum: a molecule never sees another within a 0.3 nm cutoff. Soft bond: period ~0.22 ps."""
    rng = np.random.default_rng(seed)
    system = openmm.System()
    bond = openmm.HarmonicBondForce()
    top = app.Topology()
    chain = top.addChain()
    carbon = app.Element.getBySymbol("C")
    pos = []
    for i in range(n_mol):
        res = top.addResidue("C2", chain)
        a, b = top.addAtom("C1", carbon, res), top.addAtom("C2", carbon, res)
        top.addBond(a, b)
        system.addParticle(mass)
        system.addParticle(mass)
        if constrained:
            system.addConstraint(2 * i, 2 * i + 1, r0)
        else:
            bond.addBond(2 * i, 2 * i + 1, r0, k)
        centre = np.array([i % 2, (i // 2) % 2, i // 4], dtype=float) * spacing
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        pos += [centre - 0.5 * r0 * d, centre + 0.5 * r0 * d]
    system.addForce(bond)
    if constrained:  # something to integrate besides the constraint
        ext = openmm.CustomExternalForce("0.5*100*(x^2+y^2+z^2)")
        for i in range(system.getNumParticles()):
            ext.addParticle(i, [])
        system.addForce(ext)
    return system, top, np.array(pos)


#: Fast generation settings for the dimers (stride tests use 0.032 ps = 8 record intervals).
FAST = dict(temperature=300.0, record_interval=0.004, segment_length=0.2, thermalize=0.5, decorrelate=0.1,
            platform="Reference", progress=False)


def constrained_dimer_file(path, n_segments: int):
    """Reference data of the constrained dimers (``FAST`` settings) written to ``path``."""
    from openmm_flashmd.data.generate import generate

    system, _, pos = diatomics(constrained=True)
    generate(path, system, pos, n_segments=n_segments, **FAST)
    return path
