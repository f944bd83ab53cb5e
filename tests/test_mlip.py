"""The PET energy model (MLIP) and its OpenMM TorchForce (units: nm, kJ/mol, Da)."""

import numpy as np
import pytest
import torch

import openmm_flashmd  # noqa: F401  (torch and the openmm-torch plugins before openmm)
import openmm
from openmm import app, unit

from openmm_flashmd import FlashMDIntegrator
from openmm_flashmd.model import (
    FreeParticleStrideModel, PETEnergyModel, PETHypers, PETStrideModel, add_mlip_force, create_mlip_system,
    mlip_torch_force, read_energy_metadata,
)
from openmm_flashmd.model.symmetry import random_rotation

SMALL = dict(d_pet=16, d_node=16, d_feedforward=32, num_heads=2, num_attention_layers=1, num_gnn_layers=2,
             cutoff=0.3, cutoff_width=0.05)
MASSES = {1: 1.008, 8: 15.999}
KJ = unit.kilojoule_per_mole

# float(energy) of a graph-carrying energy is what these tests mean
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True")


def make_model(dtype=torch.float64, periodic=True, seed=0, **overrides):
    torch.manual_seed(seed)
    model = PETEnergyModel(PETHypers(**{**SMALL, **overrides}), [1, 8], periodic=periodic)
    model.set_energy_scale(3.0)
    model.set_composition_energies({1: -1.5, 8: 2.0})
    return model.to(dtype)


def water_like(n_mol=8, box_length=1.0, seed=0, dtype=torch.float64, periodic=True):
    """Random O,H,H 'molecules' (H 0.1 nm from O) in a cube of ``box_length`` nm."""
    gen = torch.Generator().manual_seed(seed)
    oxygen = torch.rand(n_mol, 3, generator=gen, dtype=torch.float64) * box_length
    pos = []
    for k in range(n_mol):
        pos.append(oxygen[k])
        for _ in range(2):
            d = torch.randn(3, generator=gen, dtype=torch.float64)
            pos.append(oxygen[k] + 0.1 * d / d.norm())
    z = torch.tensor([8, 1, 1] * n_mol, dtype=torch.long)
    box = torch.eye(3, dtype=torch.float64) * box_length if periodic else torch.zeros(3, 3, dtype=torch.float64)
    return torch.stack(pos).to(dtype), z, box.to(dtype)


def topology_for(z, box_length=None):
    top = app.Topology()
    chain = top.addChain()
    for k in range(0, len(z), 3):
        res = top.addResidue("HOH", chain)
        for a in z[k:k + 3]:
            top.addAtom("O" if int(a) == 8 else "H", app.Element.getByAtomicNumber(int(a)), res)
    if box_length is not None:
        top.setPeriodicBoxVectors(np.eye(3) * box_length * unit.nanometer)
    return top


def state_of(context):
    st = context.getState(getEnergy=True, getForces=True)
    return (st.getPotentialEnergy().value_in_unit(KJ),
            st.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer))


@pytest.fixture(scope="module")
def model64():
    return make_model()


@pytest.fixture(scope="module")
def system():
    return water_like()


# ------------------------------------------------------------------------ the energy model

def test_energy_shapes_dtypes_metadata(model64, system):
    pos, z, box = system
    e = model64(pos, z, box)
    assert e.dim() == 0 and e.dtype == torch.float64 and bool(torch.isfinite(e))
    assert model64(pos.float(), z, box.float()).dtype == torch.float32
    e32 = make_model(torch.float32)(pos, z, box)
    assert e32.dtype == torch.float64 and float(e32) == pytest.approx(float(e), rel=1e-4, abs=1e-4)
    meta = read_energy_metadata(torch.jit.script(model64))
    assert meta["kind"] == "pet-energy" and meta["elements"] == [1, 8]
    assert meta["cutoff"] == 0.3 and meta["periodic"] is True
    assert PETHypers.from_dict(meta["hypers"]) == model64.hypers


def test_composition_and_scale(system):
    pos, z, box = system
    model = make_model()
    with torch.no_grad():
        for head in model.heads:
            head[-1].weight.zero_()
            head[-1].bias.zero_()
    # only the composition energies remain: 8 O * 2.0 + 16 H * -1.5
    assert float(model(pos, z, box)) == pytest.approx(8 * 2.0 - 16 * 1.5, abs=1e-12)
    # least squares from frames of two compositions
    fitted = model.fit_composition_energies([np.array([8, 1, 1]), np.array([8, 8, 1])], [3.0, 5.0])
    assert fitted[8] == pytest.approx(7 / 3) and fitted[1] == pytest.approx(1 / 3)
    assert torch.allclose(model.composition_energies, torch.tensor([1 / 3, 7 / 3], dtype=torch.float64))
    # one composition: minimum-norm solution reproduces the mean energy
    model.fit_composition_energies(np.array([8, 1, 1]), [3.0, 5.0])
    assert float(model(pos[:3], z[:3], box)) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="not among"):
        model.fit_composition_energies(np.array([6, 1, 1]), [1.0])
    with pytest.raises(ValueError):
        model.set_energy_scale(0.0)


def test_translation_and_permutation_invariance(model64, system):
    pos, z, box = system
    shift = torch.tensor([0.37, -1.21, 2.05], dtype=torch.float64)
    e = float(model64(pos, z, box))
    assert float(model64(pos + shift, z, box)) == pytest.approx(e, abs=1e-10)
    perm = torch.randperm(pos.shape[0], generator=torch.Generator().manual_seed(3))
    assert float(model64(pos[perm], z[perm], box)) == pytest.approx(e, abs=1e-10)
    model = make_model(periodic=False)
    pos, z, box = water_like(n_mol=4, box_length=0.6, periodic=False)
    e = float(model(pos, z, box))
    assert float(model(pos + shift, z, box)) == pytest.approx(e, abs=1e-10)
    perm = torch.randperm(pos.shape[0], generator=torch.Generator().manual_seed(4))
    assert float(model(pos[perm], z[perm], box)) == pytest.approx(e, abs=1e-10)


def test_box_vector_shift_invariance(model64):
    pos, z, _ = water_like()
    box = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.95, 0.0], [-0.2, 0.25, 1.05]], dtype=torch.float64)
    box = box @ random_rotation(torch.Generator().manual_seed(1)).T  # rotated triclinic cell
    moved = pos.clone()
    moved[4] += box[1] - 2 * box[2]
    moved[7] -= box[0]
    e0, f0 = model64.energy_and_forces_batch(pos[None], z, box[None])
    e1, f1 = model64.energy_and_forces_batch(moved[None], z, box[None])
    assert float(e1) == pytest.approx(float(e0), abs=1e-10)
    torch.testing.assert_close(f1, f0, rtol=0, atol=1e-10)


def test_continuity_at_cutoff():
    model = make_model(periodic=False)
    rc = model.cutoff
    pos, z, box = water_like(n_mol=3, box_length=0.3, periodic=False)
    centre = pos[0].clone()
    for trial in range(100):  # a direction in which the new atom meets only atom 0 near rc
        d = torch.randn(3, generator=torch.Generator().manual_seed(trial), dtype=torch.float64)
        direction = d / d.norm()
        if bool((((pos[1:] - (centre + rc * direction)).norm(dim=1) - rc).abs() > 0.02).all()):
            break
    else:
        pytest.fail("no direction meets only atom 0 near the cutoff")
    z2 = torch.cat([z, torch.tensor([1])])

    def run(r):
        p = torch.cat([pos, (centre + r * direction).unsqueeze(0)])
        e, f = model.energy_and_forces_batch(p[None], z2, box[None])
        return float(e), f[0]

    for delta in (1e-6, 1e-8):
        (e_in, f_in), (e_out, f_out) = run(rc - delta), run(rc + delta)
        assert abs(e_in - e_out) < 10 * delta
        assert float((f_in - f_out).abs().max()) < 1e-3
    assert abs(run(rc - 0.1)[0] - run(rc + 1e-8)[0]) > 1e-4  # the neighbour matters inside


def test_forces_are_minus_gradient(model64, system):
    pos, z, box = system
    pos = pos[:12]
    z = z[:12]
    _, forces = model64.energy_and_forces_batch(pos[None], z, box[None])
    h = 1e-6
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        i = int(torch.randint(0, 12, (1,), generator=gen))
        k = int(torch.randint(0, 3, (1,), generator=gen))
        plus, minus = pos.clone(), pos.clone()
        plus[i, k] += h
        minus[i, k] -= h
        with torch.no_grad():
            fd = -(float(model64(plus, z, box)) - float(model64(minus, z, box))) / (2 * h)
        assert float(forces[0, i, k]) == pytest.approx(fd, rel=1e-6, abs=1e-7)


def test_scripted_equals_eager_and_batch_matches_single(system):
    systems = [water_like(seed=s) for s in range(3)]
    pos = torch.stack([s[0] for s in systems])
    z = systems[0][1]
    box = torch.stack([systems[0][2], systems[1][2] * 1.1, systems[2][2] @ random_rotation(
        torch.Generator().manual_seed(5)).T])
    for dtype in (torch.float32, torch.float64):
        model = make_model(dtype)
        scripted = torch.jit.script(model)
        p, b = pos.to(dtype), box.to(dtype)
        assert torch.equal(model(p[0], z, b[0]), scripted(p[0], z, b[0]))
        e_eager = model.forward_batch(p, z, b)
        e, f = scripted.energy_and_forces_batch(p, z, b)
        torch.testing.assert_close(e, e_eager, rtol=0, atol=0)
        tol = 1e-12 if dtype == torch.float64 else 1e-4
        e2, f2 = model.energy_and_forces_batch(p, z, b)
        torch.testing.assert_close(f, f2, rtol=0, atol=tol * 0.1)  # backward graphs may round differently
        for k in range(3):
            single_e, single_f = model.energy_and_forces_batch(p[k:k + 1], z, b[k:k + 1])
            assert float(single_e) == pytest.approx(float(e[k]), abs=tol * 10)
            torch.testing.assert_close(single_f[0], f[k], rtol=0, atol=tol * 10)
            assert float(model(p[k], z, b[k])) == pytest.approx(float(e[k]), abs=tol * 10)


def test_force_training_gradients(system):
    """create_graph=True: a loss on forces reaches the parameters (double backward)."""
    pos, z, box = (t.float() if t.is_floating_point() else t for t in system)
    for scripted in (False, True):
        model = make_model(torch.float32, seed=2)
        net = torch.jit.script(model) if scripted else model
        with torch.no_grad():  # forces are computed even under no_grad ...
            e, f = net.energy_and_forces_batch(pos[None], z, box[None])
            assert not f.requires_grad and float(f.abs().max()) > 0
        assert torch.is_grad_enabled()
        e, f = net.energy_and_forces_batch(pos[None], z, box[None], True)
        (f.square().mean() + e.square().mean()).backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
            if not name.endswith("2.bias"):  # per-atom constant: no force, but energy gradient
                assert float(p.grad.abs().max()) > 0, name
    # the explicit attention path used for double backward equals the fused one
    model = make_model()
    a = model.forward_batch(system[0][None], system[1], system[2][None])
    b = model._energies(system[0][None], system[1], system[2][None], True)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_metadata_rebuild_and_save(tmp_path, model64, system):
    model = make_model(seed=6)
    model.update_metadata(provenance={"dataset": "toy"}, validation={"energy_rmse": 0.5})
    meta = read_energy_metadata(torch.jit.script(model))
    assert meta["provenance"] == {"dataset": "toy"} and meta["validation"] == {"energy_rmse": 0.5}
    rebuilt = PETEnergyModel.from_metadata(meta).double()
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.metadata_json == model.metadata_json
    pos, z, box = system
    assert torch.equal(model(pos, z, box), rebuilt(pos, z, box))
    path = tmp_path / "mlip.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    assert torch.equal(torch.jit.load(str(path))(pos, z, box), model(pos, z, box))
    with pytest.raises(ValueError, match="pet-energy"):
        PETEnergyModel.from_metadata({**meta, "kind": "pet"})
    # old hyper-parameter dictionaries (before n_radial) load with the default
    old = dict(meta["hypers"])
    del old["n_radial"]
    assert PETHypers.from_dict(old).n_radial == PETHypers().n_radial


def test_model_errors(model64, system):
    pos, z, box = system
    bad = z.clone()
    bad[2] = 6
    with pytest.raises(ValueError, match=r"\[6\].*supported elements: 1, 8"):
        model64(pos, bad, box)
    with pytest.raises(ValueError, match="periodic"):
        model64(pos, z, torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-periodic"):
        make_model(periodic=False)(pos, z, box)


# ------------------------------------------------------------------------------ OpenMM

def _six_waters_with_mlip(periodic):
    """(positions nm, the model's energy and forces, a System holding its MLIP force, that force)."""
    model = make_model(periodic=periodic, seed=1)
    pos, z, box = water_like(n_mol=6, box_length=1.0 if periodic else 0.6, periodic=periodic, seed=2)
    e_ref, f_ref = model.energy_and_forces_batch(pos[None], z, box[None])
    system = openmm.System()
    for a in z.tolist():
        system.addParticle(MASSES[a])
    if periodic:
        system.setDefaultPeriodicBoxVectors(*box.numpy())
    force = mlip_torch_force(model, z.tolist(), periodic)
    system.addForce(force)
    return pos, e_ref, f_ref, system, force


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
@pytest.mark.parametrize("periodic", [True, False])
def test_torchforce_matches_model(platform, periodic):
    pos, e_ref, f_ref, system, force = _six_waters_with_mlip(periodic)
    assert force.usesPeriodicBoundaryConditions() == periodic
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName(platform))
    context.setPositions(pos.numpy())
    energy, forces = state_of(context)
    assert energy == pytest.approx(float(e_ref), rel=1e-12, abs=1e-10)
    np.testing.assert_allclose(forces, f_ref[0].numpy(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("periodic", [True, False])
def test_energy_only_parameter_gives_the_energy_without_autograd(periodic):
    """With ENERGY_ONLY_PARAMETER at 1 (as FlashMDIntegrator sets it around the filter's energy) the
    force's energy is the model's, computed without a graph: forces cannot be asked for then."""
    from openmm_flashmd.model.energy import ENERGY_ONLY_PARAMETER

    pos, e_ref, _, system, force = _six_waters_with_mlip(periodic)
    assert [force.getGlobalParameterName(i) for i in range(force.getNumGlobalParameters())] == [ENERGY_ONLY_PARAMETER]
    reader = openmm.CustomIntegrator(0.001)
    reader.addGlobalVariable("e", 0.0)
    reader.addComputeGlobal(ENERGY_ONLY_PARAMETER, "1")
    reader.addComputeGlobal("e", "energy")
    context = openmm.Context(system, reader, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(pos.numpy())
    reader.step(1)
    assert reader.getGlobalVariableByName("e") == pytest.approx(float(e_ref), rel=1e-12, abs=1e-10)
    with pytest.raises(openmm.OpenMMException, match="does not require grad"):
        context.getState(getForces=True)


def test_atom_subset_and_float32_model():
    """Only the selected atoms reach the model; the others feel no force from it."""
    model = make_model(torch.float32, periodic=False, seed=3)
    pos, z, box = water_like(n_mol=6, box_length=0.6, periodic=False, seed=4)
    atoms = list(range(3, 12))  # molecules 1-3
    numbers = z.tolist()
    numbers[0] = 0  # an atom outside the subset may lack an element
    system = openmm.System()
    for a in z.tolist():
        system.addParticle(MASSES[a])
    system.addForce(mlip_torch_force(model, numbers, False, atoms=atoms))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pos.numpy())
    energy, forces = state_of(context)
    e_ref, f_ref = model.energy_and_forces_batch(pos[atoms][None], z[atoms], box[None])
    assert energy == pytest.approx(float(e_ref), rel=1e-5)
    np.testing.assert_allclose(forces[atoms], f_ref[0].numpy(), rtol=1e-4, atol=1e-4)
    others = [i for i in range(len(z)) if i not in atoms]
    assert np.all(forces[others] == 0.0)
    with pytest.raises(ValueError, match="repeated"):
        mlip_torch_force(model, numbers, False, atoms=[3, 3])
    with pytest.raises(ValueError, match="particle indices"):
        mlip_torch_force(model, numbers, False, atoms=[3, 99])
    with pytest.raises(ValueError, match="needs an element"):
        mlip_torch_force(model, numbers, False, atoms=[0, 1])


def test_create_mlip_system_runs_langevin(tmp_path):
    model = make_model(torch.float32, periodic=True, seed=5)
    path = tmp_path / "mlip.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    pos, z, _ = water_like(n_mol=8, box_length=1.0, seed=6)
    topology = topology_for(z.tolist(), box_length=1.0)
    for source in (model, path, torch.jit.load(str(path))):
        system = create_mlip_system(topology, source, force_group=3)
        assert system.getNumParticles() == len(z)
        assert system.getParticleMass(0).value_in_unit(unit.dalton) == pytest.approx(15.999, abs=1e-3)
        assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
        torch_forces = [f for f in system.getForces() if f.getName() == "FlashMDMLIPForce"]
        assert len(torch_forces) == 1 and torch_forces[0].getForceGroup() == 3
        assert system.usesPeriodicBoundaryConditions()
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.0005 * unit.picosecond)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
    context.setPositions(pos.numpy())
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    e0, _ = state_of(context)
    integrator.step(10)
    e1, f1 = state_of(context)
    x = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    assert np.isfinite(e1) and np.all(np.isfinite(f1)) and np.all(np.isfinite(x)) and e1 != e0
    assert not np.allclose(x, pos.numpy())
    # non-periodic topology
    no_box = create_mlip_system(topology_for(z[:6].tolist()), make_model(periodic=None), removeCMMotion=False)
    assert not any(isinstance(f, openmm.CMMotionRemover) for f in no_box.getForces())
    assert not no_box.usesPeriodicBoundaryConditions()


def test_openmm_side_errors():
    periodic_model = make_model(periodic=True)
    z = [8, 1, 1, 8, 1, 1]
    with pytest.raises(ValueError, match=r"does not support the elements Na \(11\), Cl \(17\)"):
        create_mlip_system(topology_for([8, 17, 11], box_length=1.0), periodic_model)
    with pytest.raises(ValueError, match="trained on periodic systems but the system is not periodic"):
        create_mlip_system(topology_for(z), periodic_model)
    with pytest.raises(ValueError, match="trained on non-periodic systems but the system is periodic"):
        create_mlip_system(topology_for(z, box_length=1.0), make_model(periodic=False))
    with pytest.raises(ValueError, match="half the smallest cell height"):
        create_mlip_system(topology_for(z, box_length=0.5), periodic_model)
    with pytest.raises(ValueError, match="stride model"):
        create_mlip_system(topology_for(z, box_length=1.0),
                           PETStrideModel(PETHypers(**SMALL), 0.01, [1, 8], MASSES))
    system = openmm.System()
    system.addParticle(1.0)
    with pytest.raises(ValueError, match="particles"):
        add_mlip_force(system, topology_for(z, box_length=1.0), periodic_model)
    with pytest.raises(FileNotFoundError):
        create_mlip_system(topology_for(z, box_length=1.0), "/nonexistent/mlip.pt")


# ---------------------------------------------------------------- FlashMD energy filter

def test_flashmd_filter_uses_mlip_energy():
    """"F E" with energy_force_groups={g}: K + E_MLIP(group g) is conserved by the filter."""
    group = 5
    model = make_model(periodic=True, seed=7)
    pos, z, _ = water_like(n_mol=8, box_length=1.0, seed=8)
    topology = topology_for(z.tolist(), box_length=1.0)
    system = create_mlip_system(topology, model, removeCMMotion=False, force_group=group)
    # another force in another group: the filter must ignore it
    extra = openmm.CustomExternalForce("1000*x")
    for i in range(system.getNumParticles()):
        extra.addParticle(i, [])
    extra.setForceGroup(1)
    system.addForce(extra)
    integrator = FlashMDIntegrator(system, FreeParticleStrideModel(0.004), splitting="F E",
                                   energy_force_groups={group}, topology=topology, random_seed=1)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(pos.numpy())
    context.setVelocitiesToTemperature(300 * unit.kelvin, 2)

    def total():
        st = context.getState(getEnergy=True, groups={group})
        potential = st.getPotentialEnergy().value_in_unit(KJ)
        return potential + st.getKineticEnergy().value_in_unit(KJ), potential

    h0, v0 = total()
    energies = []
    potentials = []
    for _ in range(50):
        integrator.step(1)
        h, v = total()
        energies.append(h)
        potentials.append(v)
    assert np.max(np.abs(np.array(energies) - h0)) < 1e-6 * abs(h0)
    # the MLIP energy did change (so the filter had work to do) and no scale factor was clamped
    assert np.ptp(potentials) > 0.1
    assert integrator.filter_statistics["clamped"] == 0


def test_energies_of_a_torchforce_system_are_computed_under_no_grad():
    """evaluate's energy errors run inside torch.no_grad(); openmm-torch's backward pass then fails
    unless the state is taken with autograd on (energy_state)."""
    import openmmtorch

    from openmm_flashmd.train.evaluate import energy_state

    class Well(torch.nn.Module):
        def forward(self, positions: torch.Tensor) -> torch.Tensor:
            return 50.0 * (positions**2).sum()

    system = openmm.System()
    for _ in range(2):
        system.addParticle(1.0)
    system.addForce(openmmtorch.TorchForce(torch.jit.script(Well())))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(np.full((2, 3), 0.1))
    with torch.no_grad():
        with pytest.raises(openmm.OpenMMException, match="does not require grad"):
            context.getState(getEnergy=True)
        energy = energy_state(context).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert energy == pytest.approx(50.0 * 6 * 0.01)
