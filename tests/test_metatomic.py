"""metatrain FlashMD models (metatomic AtomisticModel) as stride models: a tiny model trained
here on argon by ``mtt train``, against the ``flashmd`` package's stepper and inside
FlashMDIntegrator. Runs only with the optional extra (``pip install ".[metatomic]"``)."""

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metatrain")
pytest.importorskip("flashmd")

import ase.io  # noqa: E402
import openmm  # noqa: E402
import torch  # noqa: E402
from openmm import unit  # noqa: E402

from openmm_flashmd import FlashMDIntegrator, read_metadata  # noqa: E402
from openmm_flashmd.data.dataset import load_trajectories  # noqa: E402
from openmm_flashmd.data.generate import generate  # noqa: E402
from openmm_flashmd.model.energy import ENERGY_ONLY_PARAMETER  # noqa: E402
from openmm_flashmd.metatomic import (load_metatomic_stride_model, metatomic_mlip_force,  # noqa: E402
                                     write_metatrain_dataset)
from openmm_flashmd.systems import get_system  # noqa: E402

STRIDE = 0.016  # ps

OPTIONS = textwrap.dedent("""\
    seed: 0
    architecture:
      name: experimental.flashmd
      model: {cutoff: 5.0, d_pet: 8, d_head: 8, d_node: 8, d_feedforward: 8, num_heads: 2,
              num_attention_layers: 1, num_gnn_layers: 1}
      training: {timestep: 16.0, batch_size: 8, num_epochs: 1, log_interval: 1}
    training_set:
      systems: {read_from: pairs.xyz, reader: ase, length_unit: angstrom}
      targets:
        position: {quantity: position, read_from: pairs.xyz, reader: ase, key: future_positions, unit: A,
                   type: {cartesian: {rank: 1}}, sample_kind: atom, num_subtargets: 1}
        momentum: {quantity: momentum, read_from: pairs.xyz, reader: ase, key: future_momenta,
                   unit: (eV*u)^(1/2), type: {cartesian: {rank: 1}}, sample_kind: atom, num_subtargets: 1}
    validation_set: 0.2
    test_set: 0.0
    """)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(folder, data file, exported model) of a tiny FlashMD trained by metatrain on argon."""
    folder = tmp_path_factory.mktemp("metatrain")
    data = generate(folder / "argon.h5", "argon", n_segments=2, segment_length=0.2, thermalize=0.5,
                    decorrelate=0.1, platform="CPU", seed=1, progress=False)
    assert write_metatrain_dataset(data, folder / "pairs.xyz", STRIDE, pair_spacing=2) == 2 * 24  # 51 frames, starts 0, 2, ..., 46
    (folder / "options.yaml").write_text(OPTIONS)
    subprocess.run([sys.executable, "-m", "metatrain", "train", "options.yaml", "-o", "model.pt"], cwd=folder,
                   check=True, capture_output=True)
    return folder, Path(data), folder / "model.pt"


MLIP_OPTIONS = textwrap.dedent("""\
    seed: 0
    architecture:
      name: pet
      model: {cutoff: 5.0, d_pet: 8, d_head: 8, d_node: 8, d_feedforward: 8, num_heads: 2,
              num_attention_layers: 1, num_gnn_layers: 1}
      training: {batch_size: 8, num_epochs: 1, log_interval: 1}
    training_set:
      systems: {read_from: pairs.xyz, reader: ase, length_unit: angstrom}
      targets:
        energy: {key: energy, unit: eV, forces: {key: forces}}
    validation_set: 0.2
    test_set: 0.0
    """)


@pytest.fixture(scope="module")
def mlip(trained):
    """A tiny metatrain PET MLIP trained on the same file's energies and forces."""
    folder = trained[0]
    (folder / "mlip.yaml").write_text(MLIP_OPTIONS)
    subprocess.run([sys.executable, "-m", "metatrain", "train", "mlip.yaml", "-o", "mlip.pt"], cwd=folder,
                   check=True, capture_output=True)
    return folder / "mlip.pt"


def _start(data: Path):
    d = load_trajectories(data)
    return (d.positions[0, 0], d.velocities[0, 0], d.box[0, 0], torch.tensor(d.masses),
            torch.tensor(d.atomic_numbers))


def test_dataset_units(trained):
    folder, data, _ = trained
    d = load_trajectories(data)
    first = ase.io.read(folder / "pairs.xyz", index=0)
    np.testing.assert_allclose(first.positions / 10, d.positions[0, 0], atol=1e-7)
    np.testing.assert_allclose(first.arrays["future_positions"] / 10, d.positions[0, 4], atol=1e-7)
    # ASE: momentum unit (eV u)^1/2; kinetic energy p^2/2m in eV against OpenMM's kJ/mol
    ke_ev = float((first.get_momenta() ** 2 / (2 * d.masses[:, None])).sum())
    ke_kjmol = float((0.5 * d.masses[:, None] * d.velocities[0, 0] ** 2).sum())
    assert ke_ev * 96.485332 == pytest.approx(ke_kjmol, rel=1e-6)


def test_stride_model_matches_the_flashmd_stepper(trained):
    from flashmd.ase.velocity_verlet import _convert_atoms_to_system
    from flashmd.stepper import FlashMDStepper
    import metatomic.torch as mta

    _, data, path = trained
    model = load_metatomic_stride_model(path)
    metadata = read_metadata(model)
    assert metadata["stride"] == pytest.approx(STRIDE) and metadata["elements"] == [18]
    assert metadata["cutoff"] == pytest.approx(0.5) and metadata["masses"]["18"] == pytest.approx(39.948, abs=1e-4)
    x, v, box, masses, numbers = _start(data)
    new_x, new_v = torch.tensor(x), torch.tensor(v)
    atoms = ase.Atoms(numbers=numbers.numpy(), positions=10 * x, cell=10 * box, pbc=True, masses=masses.numpy())
    atoms.set_momenta(v * 0.01 / ase.units.fs * masses.numpy()[:, None])
    stepper = FlashMDStepper(mta.load_atomistic_model(str(path)), torch.device("cpu"))
    system = _convert_atoms_to_system(atoms, dtype=torch.float32, device="cpu")
    with torch.no_grad():
        for _ in range(10):  # 10 strides each way from the same start state
            new_x, new_v = model(new_x, new_v, masses, numbers, torch.tensor(box))
            system = stepper.step(system)
    ref_x = system.positions.double().numpy() / 10
    ref_v = (system.get_data("momenta").block().values.squeeze(-1).double().numpy()
             / masses.numpy()[:, None] / (0.01 / ase.units.fs))
    np.testing.assert_allclose(new_x.numpy(), ref_x, atol=1e-5)  # nm; float32 round-off in Å over 10 strides
    np.testing.assert_allclose(new_v.numpy(), ref_v, atol=1e-3)  # nm/ps
    assert float((new_x - torch.tensor(x)).abs().max()) > 1e-3  # it moved


def _context(model, system, splitting, **options):
    built = get_system("argon")
    integrator = FlashMDIntegrator(system, model, splitting=splitting, topology=built.topology, **options)
    return openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU")), integrator


def test_integrator_runs_the_model_exactly_and_in_every_ensemble(trained):
    _, data, path = trained
    model = load_metatomic_stride_model(path)
    x, v, box, masses, numbers = _start(data)
    context, integrator = _context(model, copy.deepcopy(get_system("argon").system), "F", fallback=False,
                                   random_rotation=False)
    context.setPeriodicBoxVectors(*box)
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(10)
    state = context.getState(getPositions=True, getVelocities=True)
    expected_x, expected_v = torch.tensor(x), torch.tensor(v)
    with torch.no_grad():
        for _ in range(10):
            expected_x, expected_v = model(expected_x, expected_v, masses, numbers, torch.tensor(box))
    np.testing.assert_allclose(state.getPositions(asNumpy=True)._value, expected_x.numpy(), atol=1e-9)
    np.testing.assert_allclose(state.getVelocities(asNumpy=True)._value, expected_v.numpy(), atol=1e-9)

    # NVT and NpT with the stride monitor; an NVT checkpoint resumes the same run to round-off, not bit for
    # bit: after loadCheckpoint the CPU platform sums the classical energy the filter and the monitor read in
    # another order (about 1e-10 kJ/mol, with our PET too). NpT is not compared: OpenMM's CPU
    # MonteCarloBarostat does not resume from a checkpoint even with LangevinMiddleIntegrator.
    for barostat in (False, True):
        system = copy.deepcopy(get_system("argon").system)
        if barostat:
            system.addForce(openmm.MonteCarloBarostat(1 * unit.bar, 120 * unit.kelvin, 2))
        context, integrator = _context(model, system, "O F E O", temperature=120 * unit.kelvin)
        context.setPeriodicBoxVectors(*box)
        context.setPositions(x)
        context.setVelocities(v)
        integrator.step(5)
        checkpoint = context.createCheckpoint()
        integrator.step(5)
        first = context.getState(getPositions=True).getPositions(asNumpy=True)._value
        assert np.all(np.isfinite(first)) and integrator.fallback_statistics["strides"] == 10
        if barostat:
            volume = context.getState().getPeriodicBoxVolume().value_in_unit(unit.nanometer**3)
            assert volume != pytest.approx(float(np.linalg.det(box)), rel=1e-12)
        else:
            context.loadCheckpoint(checkpoint)
            integrator.step(5)
            again = context.getState(getPositions=True).getPositions(asNumpy=True)._value
            np.testing.assert_allclose(again, first, atol=1e-6)  # nm; a different run would differ by 1e-3

    # a serialized System with the model's TorchForce deserializes and runs in a process that imported us
    system = copy.deepcopy(get_system("argon").system)
    context, integrator = _context(model, system, "F", fallback=False)
    copy_system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    copy_integrator = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(integrator))
    copied = openmm.Context(copy_system, copy_integrator, openmm.Platform.getPlatformByName("CPU"))
    copied.setPeriodicBoxVectors(*box)
    copied.setPositions(x)
    copied.setVelocities(v)
    copy_integrator.step(2)
    assert np.all(np.isfinite(copied.getState(getPositions=True).getPositions(asNumpy=True)._value))


def test_mlip_force_matches_the_model_and_drives_the_energy_filter(trained, mlip):
    from metatomic_ase import MetatomicCalculator

    _, data, path = trained
    x, v, box, _, _ = _start(data)
    built = get_system("argon")
    system = copy.deepcopy(built.system)
    while system.getNumForces():  # the MLIP replaces the classical potential
        system.removeForce(0)
    system.addForce(metatomic_mlip_force(mlip, system, built.topology, force_group=1, periodic=True))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(x)
    state = context.getState(getEnergy=True, getForces=True)
    atoms = ase.Atoms(numbers=[18] * len(x), positions=10 * x, cell=10 * box, pbc=True)
    atoms.calc = MetatomicCalculator(str(mlip))
    kjmol_per_ev = 96.48533212331002
    assert state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) == pytest.approx(
        atoms.get_potential_energy() * kjmol_per_ev, rel=1e-5)
    np.testing.assert_allclose(state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer),
                               atoms.get_forces() * 10 * kjmol_per_ev, atol=1e-3)
    del context
    # the energy-only evaluation (the filter's, parameter at 1) gives the same energy, without autograd
    reader = openmm.CustomIntegrator(0.001)
    reader.addGlobalVariable("e", 0.0)
    reader.addComputeGlobal(ENERGY_ONLY_PARAMETER, "1")
    reader.addComputeGlobal("e", "energy1")
    reader.addComputeGlobal(ENERGY_ONLY_PARAMETER, "0")
    context = openmm.Context(system, reader, openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(x)
    reader.step(1)
    assert reader.getGlobalVariableByName("e") == pytest.approx(atoms.get_potential_energy() * kjmol_per_ev, rel=1e-5)

    del context
    integrator = FlashMDIntegrator(system, load_metatomic_stride_model(path), temperature=120 * unit.kelvin,
                                   splitting="O F E O", energy_force_groups={1}, topology=built.topology)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPeriodicBoxVectors(*box)
    context.setPositions(x)
    context.setVelocities(v)
    integrator.step(10)
    assert integrator.filter_statistics["count"] + integrator.fallback_statistics["rejected"] >= 10
    assert np.all(np.isfinite(context.getState(getPositions=True).getPositions(asNumpy=True)._value))
    with pytest.raises(ValueError, match="does not support elements"):
        water = get_system("water")
        metatomic_mlip_force(mlip, water.system, water.topology)


def test_not_a_flashmd_model_is_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a metatomic AtomisticModel"):
        load_metatomic_stride_model(tmp_path / "model.pt")
