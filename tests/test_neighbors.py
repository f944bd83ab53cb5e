"""Tests of openmm_flashmd.model.neighbors (units: nm)."""

import itertools

import numpy as np
import pytest
import torch

from openmm_flashmd.model.neighbors import (
    AUTO_CELL_THRESHOLD,
    auto_method,
    batched_neighbor_list,
    cell_heights,
    neighbor_list,
)
from openmm_flashmd.model.symmetry import random_rotation


def reference_pairs(positions, box, cutoff):
    """Dict (i, j) -> r_j - r_i from an independent numpy search over 27 images."""
    pos = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(box, dtype=np.float64)
    periodic = np.any(cell != 0)
    out = {}
    d = pos[None, :, :] - pos[:, None, :]  # [i, j] = r_j - r_i
    if periodic:
        frac = d @ np.linalg.inv(cell)
        frac -= np.floor(frac + 0.5)
        shifts = np.array(list(itertools.product([-1, 0, 1], repeat=3)), dtype=np.float64)
        cands = (frac[:, :, None, :] + shifts[None, None]) @ cell  # [i, j, 27, 3]
        dist = np.linalg.norm(cands, axis=-1)
        inside = dist < cutoff
        assert inside.sum(axis=2).max() <= 1, "more than one image inside the cutoff"
        for i, j, s in zip(*np.nonzero(inside)):
            if i != j:
                out[(int(i), int(j))] = cands[i, j, s]
    else:
        dist = np.linalg.norm(d, axis=-1)
        for i, j in zip(*np.nonzero(dist < cutoff)):
            if i != j:
                out[(int(i), int(j))] = d[i, j]
    return out


def random_cell(gen, min_height, rotate=True, dtype=torch.float64):
    """A random triclinic cell (rows, nm) whose heights all exceed ``min_height``."""
    while True:
        a = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) * (1.0 + torch.rand(1, generator=gen, dtype=torch.float64))
        b = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64) * (1.0 + torch.rand(1, generator=gen, dtype=torch.float64))
        c = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) * (1.0 + torch.rand(1, generator=gen, dtype=torch.float64))
        b = b + (torch.rand(1, generator=gen, dtype=torch.float64) - 0.5) * a
        c = c + (torch.rand(1, generator=gen, dtype=torch.float64) - 0.5) * a + (torch.rand(1, generator=gen, dtype=torch.float64) - 0.5) * b
        box = torch.stack([a, b, c])
        box = box * (min_height / float(cell_heights(box).min())) * 1.05
        if rotate:
            box = box @ random_rotation(gen).T
        return box.to(dtype)


def random_positions(gen, box, n, dtype=torch.float64):
    """Positions spread over (and partly outside) the cell."""
    frac = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 1.6 - 0.3
    return (frac @ box.to(torch.float64)).to(dtype)


def check_against_reference(edge_index, vectors, positions, box, cutoff, atol):
    ref = reference_pairs(positions.detach().double().numpy(), box.detach().double().numpy(), cutoff)
    got = {(int(i), int(j)): k for k, (i, j) in enumerate(edge_index.T.tolist())}
    assert set(got) == set(ref)
    for pair, k in got.items():
        np.testing.assert_allclose(vectors[k].detach().double().numpy(), ref[pair], atol=atol, rtol=0)


@pytest.mark.parametrize("rotate", [False, True])
@pytest.mark.parametrize("method", ["brute", "cell"])
def test_matches_reference_triclinic(method, rotate):
    gen = torch.Generator().manual_seed(1 if rotate else 2)
    cutoff = 0.45
    for trial in range(3):
        box = random_cell(gen, min_height=3.2 * cutoff, rotate=rotate)  # >= 3 cells: cell path active
        pos = random_positions(gen, box, 150)
        e, v = neighbor_list(pos, box, cutoff, method)
        assert e.dtype == torch.int64 and e.shape[0] == 2
        check_against_reference(e, v, pos, box, cutoff, atol=1e-12)


def test_methods_identical_and_sorted():
    gen = torch.Generator().manual_seed(3)
    box = random_cell(gen, min_height=2.0)
    pos = random_positions(gen, box, 400)
    e1, v1 = neighbor_list(pos, box, 0.45, "brute")
    e2, v2 = neighbor_list(pos, box, 0.45, "cell")
    assert torch.equal(e1, e2)
    torch.testing.assert_close(v1, v2, rtol=0, atol=1e-13)
    key = e1[0] * 400 + e1[1]
    assert bool((key[1:] > key[:-1]).all())
    assert bool((e1[0] != e1[1]).all())


def test_symmetric_full_list():
    gen = torch.Generator().manual_seed(4)
    box = random_cell(gen, min_height=1.5)
    pos = random_positions(gen, box, 120)
    e, v = neighbor_list(pos, box, 0.45)
    index = {(i, j): k for k, (i, j) in enumerate(e.T.tolist())}
    for (i, j), k in index.items():
        torch.testing.assert_close(v[index[(j, i)]], -v[k], rtol=0, atol=0)


def test_small_box_falls_back_to_brute():
    # 2 <= height / cutoff < 3: the cell path must fall back to brute force
    gen = torch.Generator().manual_seed(5)
    box = random_cell(gen, min_height=2.1 * 0.45)
    pos = random_positions(gen, box, 40)
    e1, v1 = neighbor_list(pos, box, 0.45, "brute")
    e2, v2 = neighbor_list(pos, box, 0.45, "cell")
    assert torch.equal(e1, e2)
    check_against_reference(e2, v2, pos, box, 0.45, atol=1e-12)


@pytest.mark.parametrize("method", ["brute", "cell"])
def test_non_periodic(method):
    gen = torch.Generator().manual_seed(6)
    pos = torch.rand(200, 3, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 2.0, 0.5], dtype=torch.float64)
    box = torch.zeros(3, 3, dtype=torch.float64)
    e, v = neighbor_list(pos, box, 0.45, method)
    check_against_reference(e, v, pos, box, 0.45, atol=1e-12)
    # far-apart positions: no wrapping may happen without a box
    pos2 = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [50.0, 0.0, 0.0]], dtype=torch.float64)
    e2, v2 = neighbor_list(pos2, box, 0.45, method)
    assert e2.T.tolist() == [[0, 1], [1, 0]]


def test_cutoff_too_large_error():
    # a skewed cell: vectors of about 2 nm but a shortest height of only ~0.79 nm
    box = torch.tensor([[2.0, 0.0, 0.0], [1.85, 0.8, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    h = float(cell_heights(box).min())
    assert h == pytest.approx(3.2 / np.hypot(1.6, 3.7))
    pos = torch.rand(10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="cutoff") as info:
        neighbor_list(pos, box, 0.45)
    assert str(h) in str(info.value)
    neighbor_list(pos, box, 0.39)  # allowed
    with pytest.raises(ValueError, match="cutoff"):
        batched_neighbor_list(pos.unsqueeze(0), box.unsqueeze(0), 0.45)
    with pytest.raises(ValueError, match="method"):
        neighbor_list(pos, box, 0.39, "nonsense")


@pytest.mark.parametrize("method", ["brute", "cell"])
def test_batched_equals_single(method):
    gen = torch.Generator().manual_seed(7)
    n = 90
    boxes, positions = [], []
    for b in range(3):
        box = random_cell(gen, min_height=1.5)
        boxes.append(box)
        positions.append(random_positions(gen, box, n))
    boxes.append(torch.zeros(3, 3, dtype=torch.float64))  # a non-periodic structure in the batch
    positions.append(torch.rand(n, 3, generator=gen, dtype=torch.float64) * 1.5)
    pos = torch.stack(positions)
    box = torch.stack(boxes)
    e, v = batched_neighbor_list(pos, box, 0.45, method)
    edges, vecs = [], []
    for b in range(4):
        eb, vb = neighbor_list(pos[b], box[b], 0.45, "brute")
        edges.append(eb + b * n)
        vecs.append(vb)
    assert torch.equal(e, torch.cat(edges, 1))
    torch.testing.assert_close(v, torch.cat(vecs), rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torchscript_and_dtypes(dtype):
    scripted = torch.jit.script(neighbor_list)
    scripted_batched = torch.jit.script(batched_neighbor_list)
    gen = torch.Generator().manual_seed(8)
    box = random_cell(gen, min_height=1.6, dtype=dtype)
    pos = random_positions(gen, box, 100, dtype=dtype)
    for method in ("brute", "cell", "auto"):
        e0, v0 = neighbor_list(pos, box, 0.45, method)
        e1, v1 = scripted(pos, box, 0.45, method)
        assert v1.dtype == dtype
        assert torch.equal(e0, e1) and torch.equal(v0, v1)
        e2, v2 = scripted_batched(pos.unsqueeze(0), box.unsqueeze(0), 0.45, method)
        assert torch.equal(e0, e2)
        torch.testing.assert_close(v0, v2)
    if dtype == torch.float32:
        e64, _ = neighbor_list(pos.double(), box.double(), 0.45)
        # float32 may only disagree for pairs within rounding of the cutoff
        assert abs(e64.shape[1] - e0.shape[1]) <= 2


@pytest.mark.parametrize("method", ["brute", "cell"])
def test_differentiable(method):
    gen = torch.Generator().manual_seed(9)
    box = random_cell(gen, min_height=1.5)
    pos = random_positions(gen, box, 60).requires_grad_(True)
    for batched in (False, True):
        if batched:
            e, v = batched_neighbor_list(pos.unsqueeze(0), box.unsqueeze(0), 0.45, method)
        else:
            e, v = neighbor_list(pos, box, 0.45, method)
        # vectors are r_j - r_i - shift: d(sum W.v)/dr = scatter(+W at j, -W at i)
        w = torch.randn(v.shape, generator=gen, dtype=v.dtype)
        (grad,) = torch.autograd.grad((w * v).sum(), pos)
        expected = torch.zeros_like(pos).index_add(0, e[1], w).index_add(0, e[0], -w)
        torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)
    small = pos[:12].detach().clone().requires_grad_(True)
    small_box = box * 0.5  # heights >= 0.75 nm: cutoff 0.3 nm, images across the faces
    n_edges = neighbor_list(small, small_box, 0.3, method)[0].shape[1]
    assert n_edges > 0
    assert torch.autograd.gradcheck(lambda p: neighbor_list(p, small_box, 0.3, method)[1], (small,))


def test_auto_and_edge_cases():
    assert auto_method(AUTO_CELL_THRESHOLD - 1) == "brute"
    assert auto_method(AUTO_CELL_THRESHOLD) == "cell"
    box = torch.eye(3, dtype=torch.float64) * 2.0
    for n in (0, 1):
        e, v = neighbor_list(torch.zeros(n, 3, dtype=torch.float64), box, 0.45)
        assert e.shape == (2, 0) and v.shape == (0, 3)
    e, v = batched_neighbor_list(torch.zeros(2, 1, 3, dtype=torch.float64), torch.stack([box, box]), 0.45)
    assert e.shape == (2, 0)


def test_large_system_cell_path():
    gen = torch.Generator().manual_seed(10)
    box = random_cell(gen, min_height=3.0)
    pos = random_positions(gen, box, 1500)
    e_auto, v_auto = neighbor_list(pos, box, 0.45)  # auto -> cell list
    e_b, v_b = neighbor_list(pos, box, 0.45, "brute")
    assert torch.equal(e_auto, e_b)
    torch.testing.assert_close(v_auto, v_b, rtol=0, atol=1e-13)
