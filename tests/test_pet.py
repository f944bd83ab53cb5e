"""Tests of the PET stride model (units: nm, ps, Da)."""

import json

import pytest
import torch

from openmm_flashmd.model.pet import PETHypers, PETStrideModel, cutoff_function
from openmm_flashmd.model.protocol import load_model, read_metadata, save_model
from openmm_flashmd.model.symmetry import random_rotation, rotation_error, rotation_errors

MASSES = {1: 1.008, 8: 15.999}
STRIDE = 0.016  # ps
SMALL = dict(d_pet=16, d_node=16, d_feedforward=32, num_heads=2, num_attention_layers=2, num_gnn_layers=2)


def make_model(dtype=torch.float64, periodic=True, seed=0, **overrides):
    torch.manual_seed(seed)
    hypers = PETHypers(**{**SMALL, **overrides})
    model = PETStrideModel(hypers, STRIDE, [1, 8], MASSES, periodic=periodic)
    return model.to(dtype)


def water_like(n_mol=10, box_length=1.0, seed=0, dtype=torch.float64, periodic=True):
    """Random O,H,H 'molecules' (H 0.1 nm from O) with thermal-ish velocities."""
    gen = torch.Generator().manual_seed(seed)
    oxygen = torch.rand(n_mol, 3, generator=gen, dtype=torch.float64) * box_length
    pos = []
    for k in range(n_mol):
        pos.append(oxygen[k])
        for _ in range(2):
            d = torch.randn(3, generator=gen, dtype=torch.float64)
            pos.append(oxygen[k] + 0.1 * d / d.norm())
    pos = torch.stack(pos)
    z = torch.tensor([8, 1, 1] * n_mol, dtype=torch.long)
    m = torch.tensor([MASSES[int(a)] for a in z], dtype=torch.float64)
    vel = torch.randn(pos.shape, generator=gen, dtype=torch.float64) * torch.sqrt(2.494 / m).unsqueeze(1)
    box = torch.eye(3, dtype=torch.float64) * box_length if periodic else torch.zeros(3, 3, dtype=torch.float64)
    return pos.to(dtype), vel.to(dtype), m.to(dtype), z, box.to(dtype)


@pytest.fixture(autouse=True)
def _no_grad():
    """Tests run without autograd unless they enable it (test_gradients_*)."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def model64():
    return make_model()


@pytest.fixture(scope="module")
def system():
    return water_like()


def test_hypers_roundtrip_and_validation():
    h = PETHypers(d_pet=32, num_heads=4, predict_momentum_difference=False)
    assert PETHypers.from_dict(h.to_dict()) == h
    assert json.loads(json.dumps(h.to_dict())) == h.to_dict()
    with pytest.raises(ValueError, match="unknown"):
        PETHypers.from_dict({"d_pett": 3})
    with pytest.raises(ValueError):
        PETHypers(d_pet=30, num_heads=4)
    with pytest.raises(ValueError):
        PETHypers(cutoff_width=0.6)
    with pytest.raises(ValueError):
        PETHypers(activation="relu")


def test_cutoff_function():
    r = torch.linspace(0.0, 0.6, 601, dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        fc = cutoff_function(r, 0.45, 0.05)
        (g,) = torch.autograd.grad(fc.sum(), r)
    fc = fc.detach()
    assert torch.all(fc[r <= 0.4] == 1.0) and torch.all(fc[r >= 0.45] == 0.0)
    assert bool(torch.all(fc[1:] <= fc[:-1]))
    assert bool(torch.isfinite(g).all())


def test_output_shapes_dtypes_and_metadata(model64, system):
    pos, vel, m, z, box = system
    new_pos, new_vel = model64(pos, vel, m, z, box)
    assert new_pos.shape == pos.shape and new_vel.shape == vel.shape
    assert new_pos.dtype == torch.float64
    # float32 inputs into the float64 model come back in float32, and vice versa
    out32 = model64(pos.float(), vel.float(), m.float(), z, box.float())
    assert out32[0].dtype == torch.float32 and out32[1].dtype == torch.float32
    model32 = make_model(torch.float32)
    out = model32(pos, vel, m, z, box)
    assert out[0].dtype == torch.float64
    meta = read_metadata(torch.jit.script(model64))
    assert meta["kind"] == "pet" and meta["stride"] == STRIDE
    assert meta["elements"] == [1, 8] and meta["masses"] == {"1": 1.008, "8": 15.999}
    assert meta["cutoff"] == 0.45 and meta["periodic"] is True
    assert PETHypers.from_dict(meta["hypers"]) == model64.hypers


def test_outputs_are_nontrivial(model64, system):
    pos, vel, m, z, box = system
    new_pos, new_vel = model64(pos, vel, m, z, box)
    free_flight = pos + vel * STRIDE
    assert float((new_pos - free_flight).detach().abs().max()) > 1e-4
    assert float((new_vel - vel).detach().abs().max()) > 1e-2


def test_zero_heads_give_free_flight(system):
    model = make_model()
    with torch.no_grad():
        for head in list(model.heads_q) + list(model.heads_p):
            head[-1].weight.zero_()
            head[-1].bias.zero_()
    pos, vel, m, z, box = system
    new_pos, new_vel = model(pos, vel, m, z, box)
    torch.testing.assert_close(new_pos, pos + vel * STRIDE, rtol=0, atol=1e-14)
    torch.testing.assert_close(new_vel, vel, rtol=0, atol=1e-14)


def test_translation_invariance(model64, system):
    pos, vel, m, z, box = system
    shift = torch.tensor([0.37, -1.21, 2.05], dtype=torch.float64)
    a = model64(pos, vel, m, z, box)
    b = model64(pos + shift, vel, m, z, box)
    torch.testing.assert_close(b[0] - shift, a[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(b[1], a[1], rtol=0, atol=1e-10)
    # non-periodic model
    model = make_model(periodic=False)
    pos, vel, m, z, box = water_like(periodic=False)
    a = model(pos, vel, m, z, box)
    b = model(pos + shift, vel, m, z, box)
    torch.testing.assert_close(b[0] - shift, a[0], rtol=0, atol=1e-10)
    torch.testing.assert_close(b[1], a[1], rtol=0, atol=1e-10)


def test_box_vector_shift_invariance(model64):
    pos, vel, m, z, _ = water_like()
    box = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.95, 0.0], [-0.2, 0.25, 1.05]], dtype=torch.float64)
    box = box @ random_rotation(torch.Generator().manual_seed(1)).T  # rotated triclinic cell
    a = model64(pos, vel, m, z, box)
    moved = pos.clone()
    moved[4] += box[1] - 2 * box[2]
    moved[7] -= box[0]
    b = model64(moved, vel, m, z, box)
    torch.testing.assert_close(b[0] - moved, a[0] - pos, rtol=0, atol=1e-10)
    torch.testing.assert_close(b[1], a[1], rtol=0, atol=1e-10)


def test_permutation_equivariance(model64, system):
    pos, vel, m, z, box = system
    perm = torch.randperm(pos.shape[0], generator=torch.Generator().manual_seed(3))
    a = model64(pos, vel, m, z, box)
    b = model64(pos[perm], vel[perm], m[perm], z[perm], box)
    torch.testing.assert_close(b[0], a[0][perm], rtol=0, atol=1e-10)
    torch.testing.assert_close(b[1], a[1][perm], rtol=0, atol=1e-10)


def test_continuity_across_cutoff():
    model = make_model(periodic=False)
    rc = model.cutoff
    pos, vel, m, z, box = water_like(n_mol=3, box_length=0.3, periodic=False)
    centre = pos[0].clone()
    extra_pos = torch.cat([pos, torch.zeros(1, 3, dtype=torch.float64)])
    extra = (extra_pos, torch.cat([vel, torch.tensor([[0.5, -0.3, 0.2]], dtype=torch.float64)]))
    m2 = torch.cat([m, torch.tensor([1.008], dtype=torch.float64)])
    z2 = torch.cat([z, torch.tensor([1])])
    # choose a direction along which the new atom meets only atom 0 near distance rc
    for trial in range(100):
        d = torch.randn(3, generator=torch.Generator().manual_seed(trial), dtype=torch.float64)
        direction = d / d.norm()
        probe = centre + rc * direction
        others = (pos[1:] - probe).norm(dim=1)
        if bool(((others - rc).abs() > 0.02).all()):
            break
    else:
        pytest.fail("no direction meets only atom 0 near the cutoff")

    def run(r):
        p = extra[0].clone()
        p[-1] = centre + r * direction
        with torch.no_grad():
            return model(p, extra[1], m2, z2, box)

    # other atoms also see the moving atom (well inside their cutoff), so outputs move
    # smoothly with it; a discontinuity at rc would not shrink with the step
    for delta in (1e-6, 1e-8):
        inside = run(rc - delta)
        outside = run(rc + delta)
        for a, b in zip(inside, outside):
            assert float((a - b).abs().max()) < 10 * delta
    # ... while the same atom well inside the cutoff clearly matters
    deep = run(rc - 0.1)
    assert float((deep[1][0] - outside[1][0]).abs().max()) > 1e-4
    # a sweep in small steps: no jump larger than a few typical steps
    rs = torch.linspace(rc - 0.02, rc + 0.02, 81, dtype=torch.float64)
    outs = torch.stack([run(float(r))[1][:-1] for r in rs])
    jumps = (outs[1:] - outs[:-1]).abs().flatten(1).max(dim=1).values
    assert float(jumps.max()) < 1e-3
    assert float(jumps.max()) <= 10 * float(jumps[jumps > 0].median()) + 1e-12


def test_gradients_finite_near_cutoff():
    model = make_model(periodic=False)
    rc = model.cutoff
    pos = torch.tensor(
        [[0.0, 0.0, 0.0], [rc - 1e-9, 0.0, 0.0], [0.0, rc - 0.02, 0.0], [0.0, 0.0, rc + 1e-9]], dtype=torch.float64
    )
    pos.requires_grad_(True)
    vel = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m = torch.tensor([15.999, 1.008, 1.008, 1.008], dtype=torch.float64)
    z = torch.tensor([8, 1, 1, 1])
    with torch.enable_grad():
        new_pos, new_vel = model(pos, vel, m, z, torch.zeros(3, 3, dtype=torch.float64))
        loss = (new_pos**2).sum() + (new_vel**2).sum()
        loss.backward()
    assert pos.grad is not None and float(pos.grad.abs().max()) > 0.0
    assert bool(torch.isfinite(pos.grad).all())
    for p in model.parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all())


def test_constraints_exact(model64, system):
    pos, vel, m, z, box = system
    new_pos, new_vel = model64(pos, vel, m, z, box)
    mv = (m.unsqueeze(1) * vel).sum(0)
    mv_new = (m.unsqueeze(1) * new_vel).sum(0)
    assert float((mv_new - mv).abs().max()) < 1e-12 * max(1.0, float(mv.abs().max()))
    com_shift = (m.unsqueeze(1) * (new_pos - pos)).sum(0) / m.sum()
    v_com = mv / m.sum()
    assert float((com_shift - STRIDE * v_com).abs().max()) < 1e-13
    # also without the momentum-difference residual
    model = make_model(predict_momentum_difference=False)
    new_pos, new_vel = model(pos, vel, m, z, box)
    assert float(((m.unsqueeze(1) * new_vel).sum(0) - mv).abs().max()) < 1e-12


def test_scripted_equals_eager(system):
    for dtype in (torch.float32, torch.float64):
        model = make_model(dtype)
        scripted = torch.jit.script(model)
        pos, vel, m, z, box = (t.to(dtype) if t.is_floating_point() else t for t in system)
        a = model(pos, vel, m, z, box)
        b = scripted(pos, vel, m, z, box)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        batch = (pos.unsqueeze(0), vel.unsqueeze(0), m, z, box.unsqueeze(0))
        c = scripted.forward_batch(*batch)
        d = scripted.forward_scaled_batch(*batch)
        assert torch.equal(c[0], model.forward_batch(*batch)[0])
        assert torch.equal(d[1], model.forward_scaled_batch(*batch)[1])
        assert scripted.stride == STRIDE
        assert json.loads(scripted.metadata_json)["kind"] == "pet"


def test_double_variant_and_determinism(system):
    model = make_model(torch.float32).double()
    pos, vel, m, z, box = system
    a = model(pos, vel, m, z, box)
    b = model(pos, vel, m, z, box)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    scripted = torch.jit.script(model)
    c = scripted(pos, vel, m, z, box)
    d = scripted(pos, vel, m, z, box)
    assert torch.equal(c[0], d[0]) and torch.equal(c[1], d[1])
    assert torch.equal(a[0], c[0])


def test_batch_matches_single(model64):
    systems = [water_like(seed=s) for s in range(3)]
    boxes = [systems[0][4], systems[1][4] * 1.1, systems[2][4] @ random_rotation(torch.Generator().manual_seed(5)).T]
    pos = torch.stack([s[0] for s in systems])
    vel = torch.stack([s[1] for s in systems])
    box = torch.stack(boxes)
    m, z = systems[0][2], systems[0][3]
    new_pos, new_vel = model64.forward_batch(pos, vel, m, z, box)
    y_q, y_p = model64.forward_scaled_batch(pos, vel, m, z, box)
    sqrt_m = m.sqrt().view(1, -1, 1)
    torch.testing.assert_close(y_q, (new_pos - pos) * sqrt_m, rtol=0, atol=1e-13)
    torch.testing.assert_close(y_p, new_vel * sqrt_m, rtol=0, atol=1e-13)
    for b in range(3):
        p1, v1 = model64(pos[b], vel[b], m, z, box[b])
        torch.testing.assert_close(new_pos[b], p1, rtol=0, atol=1e-12)
        torch.testing.assert_close(new_vel[b], v1, rtol=0, atol=1e-12)


def test_fused_attention_matches_reference(system):
    model = make_model()
    pos, vel, m, z, box = system
    a = model(pos, vel, m, z, box)
    for module in model.modules():
        if hasattr(module, "use_sdpa"):
            module.use_sdpa = False
    b = model(pos, vel, m, z, box)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-12)


def test_attention_equals_its_formula_with_the_trained_projection():
    """CutoffAttention (fused and explicit paths, evaluated with the width-aligned projection)
    equals the class docstring's formula computed sequence by sequence from ``qkv(x)`` itself."""
    from openmm_flashmd.model.pet import CutoffAttention, _sequence_layout

    torch.manual_seed(3)
    dim, heads, n_atoms = 16, 4, 6
    attention = CutoffAttention(dim, heads).to(torch.float64)
    centre = torch.sort(torch.randint(0, n_atoms, (20,))).values
    n_tokens = n_atoms + centre.shape[0]
    x = torch.randn(n_tokens, dim, dtype=torch.float64)
    weights = torch.cat([torch.ones(n_atoms, dtype=torch.float64), torch.rand(centre.shape[0], dtype=torch.float64)])
    slots, masks, sizes, lengths = _sequence_layout(centre, n_atoms, group_atoms=3)
    hd, vd = attention.head_dim, attention.value_dim
    qkv = attention.qkv(x)
    q, k = qkv[:, :dim].reshape(-1, heads, hd), qkv[:, dim:2 * dim].reshape(-1, heads, hd)
    v = qkv[:, 2 * dim:].reshape(-1, heads, vd)
    expected = torch.empty(n_tokens, heads, vd, dtype=torch.float64)
    for atom in range(n_atoms):
        sequence = torch.cat([torch.tensor([atom]), n_atoms + torch.nonzero(centre == atom).flatten()])
        scores = torch.einsum("ahd,bhd->hab", q[sequence], k[sequence]) * attention.scale
        p = torch.softmax(scores, dim=-1) * weights[sequence].view(1, 1, -1)
        p = p / p.sum(dim=-1, keepdim=True)
        expected[sequence] = torch.einsum("hab,bhd->ahd", p, v[sequence])
    expected = attention.out(expected.reshape(n_tokens, heads * vd))
    for explicit in (False, True):
        got = attention(x, weights, slots, masks, sizes, lengths, explicit)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
        with torch.enable_grad():  # and its gradients (the weights enter twice: values and their last channel)
            assert torch.autograd.gradcheck(
                lambda tokens, w: attention(tokens, w, slots, masks, sizes, lengths, explicit),
                (x.clone().requires_grad_(), weights.clone().requires_grad_()))


def test_a_saved_model_rebuilt_under_this_code_is_the_same_model(model64, system, tmp_path):
    from openmm_flashmd.train.export import model_from_file

    model64.update_metadata(validation={"note": "kept"})
    path = save_model(model64, tmp_path / "m.pt")
    saved = load_model(path)
    rebuilt = model_from_file(path)
    assert rebuilt.metadata_json == saved.metadata_json
    assert next(rebuilt.parameters()).dtype == torch.float64
    for a, b in zip(saved(*system), torch.jit.script(rebuilt)(*system)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_errors(model64, system):
    pos, vel, m, z, box = system
    bad = z.clone()
    bad[2] = 6
    with pytest.raises(ValueError, match=r"\[6\].*supported elements: 1, 8"):
        model64(pos, vel, m, bad, box)
    with pytest.raises(Exception, match="not trained for"):
        torch.jit.script(model64)(pos, vel, m, bad, box)
    with pytest.raises(ValueError, match="periodic"):
        model64(pos, vel, m, z, torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="cutoff"):
        model64(pos, vel, m, z, torch.eye(3, dtype=torch.float64) * 0.8)
    with pytest.raises(ValueError, match="mass"):
        PETStrideModel(PETHypers(**SMALL), STRIDE, [1, 6], MASSES)
    with pytest.raises(ValueError, match="stride"):
        PETStrideModel(PETHypers(**SMALL), 0.0, [1, 8], MASSES)


def test_set_scales(system):
    model = make_model()
    model.set_scales(2.0, 0.05, 3.0)
    assert float(model.velocity_scale) == 2.0 and float(model.dq_scale) == 0.05 and float(model.p_scale) == 3.0
    scripted = torch.jit.script(model)
    assert float(scripted.p_scale) == 3.0
    with pytest.raises(ValueError):
        model.set_scales(-1.0, 1.0, 1.0)


def test_save_load_roundtrip(tmp_path, model64, system):
    path = save_model(model64, tmp_path / "pet.pt")
    loaded = load_model(path)
    pos, vel, m, z, box = system
    a = model64(pos, vel, m, z, box)
    b = loaded(pos, vel, m, z, box)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


class FreeFlight(torch.nn.Module):
    """An exactly rotation-equivariant toy stride model."""

    def forward(self, positions, velocities, masses, atomic_numbers, box):
        return positions + velocities * STRIDE, velocities * 0.5


def test_rotation_error(model64, system):
    pos, vel, m, z, box = system
    assert rotation_error(FreeFlight(), pos, vel, m, z, box, n_rotations=4) < 1e-14
    errors = rotation_errors(model64, pos, vel, m, z, box, n_rotations=3)
    assert all(torch.isfinite(torch.tensor(v)) for v in errors.values())
    assert errors["combined"] > 0.0  # PET is not equivariant by construction


def test_attention_grouping_does_not_change_results():
    model = make_model(torch.float64, seed=4)
    pos, vel, m, z, box = water_like(n_mol=80, box_length=1.45, seed=4)  # 240 atoms
    model.attention_group_atoms = 10**9  # one padding group
    a = model(pos, vel, m, z, box)
    model.attention_group_atoms = 40  # 6 groups sorted by neighbour count
    b = torch.jit.script(model)(pos, vel, m, z, box)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=1e-12)


def test_training_gradients_reach_all_parameters():
    model = make_model(torch.float32, seed=5)
    systems = [water_like(seed=s, dtype=torch.float32) for s in range(2)]
    pos = torch.stack([s[0] for s in systems])
    vel = torch.stack([s[1] for s in systems])
    box = torch.stack([s[4] for s in systems])
    m, z = systems[0][2], systems[0][3]
    with torch.enable_grad():
        y_q, y_p = model.forward_scaled_batch(pos, vel, m, z, box)
        assert y_q.shape == pos.shape and y_p.dtype == torch.float32
        (y_q.square().mean() + y_p.square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().max()) > 0.0, name


def test_metadata_update_and_rebuild(system):
    model = make_model(seed=6)
    model.update_metadata(provenance={"dataset": "toy"}, validation={"rmse_q_nm": 0.01})
    meta = read_metadata(torch.jit.script(model))
    assert meta["provenance"] == {"dataset": "toy"} and meta["validation"] == {"rmse_q_nm": 0.01}
    rebuilt = PETStrideModel.from_metadata(meta).double()
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.metadata_json == model.metadata_json
    pos, vel, m, z, box = system
    a = model(pos, vel, m, z, box)
    b = rebuilt(pos, vel, m, z, box)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_radial_basis_and_old_hypers():
    from openmm_flashmd.model.pet import radial_basis

    r = torch.linspace(0.0, 0.45, 91, dtype=torch.float64)
    b = radial_basis(r, 0.45, 8)
    assert b.shape == (91, 8) and bool(torch.isfinite(b).all())
    torch.testing.assert_close(b[0], torch.arange(1, 9, dtype=torch.float64))  # b_k(0) = k
    assert float(b[-1].abs().max()) < 1e-12  # sin(k pi) = 0 at the cutoff
    assert radial_basis(r, 0.45, 0).shape == (91, 0)
    with pytest.raises(ValueError, match="n_radial"):
        PETHypers(n_radial=-1)
    old = PETHypers().to_dict()
    del old["n_radial"]  # a dictionary written before the field existed
    assert PETHypers.from_dict(old) == PETHypers()


def test_state_dict_from_before_the_shared_backbone_loads(system):
    """Weights saved with the old key layout (heads inside gnn_layers) load with n_radial=0."""
    model = make_model(seed=7, n_radial=0)
    old = {}
    for key, value in model.state_dict().items():
        if key.startswith("heads_"):
            kind, layer, rest = key.split(".", 2)
            key = f"gnn_layers.{layer}.head_{kind[-1]}.{rest}"
        elif key.startswith("backbone."):
            key = key[len("backbone."):]
        old[key] = value
    assert "gnn_layers.1.head_p.2.bias" in old and "species_index" in old
    rebuilt = make_model(seed=8, n_radial=0)
    rebuilt.load_state_dict(old)
    pos, vel, m, z, box = system
    a, b = model(pos, vel, m, z, box), rebuilt(pos, vel, m, z, box)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_forward_matches_frozen_reference_outputs():
    """The forward of today's code against outputs frozen before the forward was optimised
    (``tests/data/pet_reference.pt``: a random-weight float32 model with the Verlet-guess input
    and two attention layers on 150 rigid waters, its weights, inputs and outputs, written under
    commit 35212c9): equal to float32 round-off, eager and scripted."""
    from pathlib import Path

    ref = torch.load(Path(__file__).parent / "data" / "pet_reference.pt", weights_only=False)
    model = PETStrideModel.build(PETHypers.from_dict(ref["hypers"]), 0.008, [1, 8], {1: 1.00794, 8: 15.9994},
                                 periodic=True)
    model.load_state_dict(ref["state_dict"])
    model.eval()
    inputs = [ref[k] for k in ("positions", "velocities", "masses", "atomic_numbers", "box", "guess_displacement",
                               "guess_velocities")]
    dq_ref = ref["new_positions"] - ref["positions"]
    assert float((dq_ref - ref["guess_displacement"]).abs().max()) > 1e-3  # the heads matter in this test
    for candidate in (model, torch.jit.script(model)):
        new_x, new_v = candidate(*inputs)
        # float32 arithmetic: differences of a few ulps of the largest output, amplified through the layers
        torch.testing.assert_close(new_x - ref["positions"], dq_ref, rtol=0, atol=1e-5 * float(dq_ref.abs().max()))
        torch.testing.assert_close(new_v, ref["new_velocities"], rtol=0,
                                   atol=1e-5 * float(ref["new_velocities"].abs().max()))


def test_a_periodic_replica_gets_the_same_stride_per_atom():
    """The stride is a function of each atom's neighbourhood alone: a box and its 2x2x2 periodic
    replica (720 atoms: the cell list and six attention groups, where the box itself takes the
    brute-force list and one group) give every copy of an atom the same displacement and velocity."""
    model = torch.jit.script(make_model(torch.float64, seed=7))
    pos, vel, m, z, box = water_like(n_mol=30, box_length=1.0, seed=7)
    new_pos, new_vel = model(pos, vel, m, z, box)
    shifts = [torch.tensor([i, j, k], dtype=torch.float64) for i in range(2) for j in range(2) for k in range(2)]
    big_pos = torch.cat([pos + s @ box for s in shifts])
    big_new_pos, big_new_vel = model(big_pos, vel.repeat(8, 1), m.repeat(8), z.repeat(8), 2 * box)
    n = pos.shape[0]
    for c in range(8):
        part = slice(c * n, (c + 1) * n)
        torch.testing.assert_close(big_new_pos[part] - big_pos[part], new_pos - pos, rtol=0, atol=1e-10)
        torch.testing.assert_close(big_new_vel[part], new_vel, rtol=0, atol=1e-10)
