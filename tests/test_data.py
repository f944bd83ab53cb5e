"""Reference-data generation, the HDF5 schema and training pairs."""

import io

import h5py
import numpy as np
import pytest
import torch

import openmm_flashmd  # noqa: F401
import openmm
from openmm import app, unit

from flashmd_data_helpers import FAST, diatomics
from openmm_flashmd.data import schema
from openmm_flashmd.data.dataset import (
    DataError, StridePairs, load_trajectories, random_orthogonal, split_segments, stride_frames,
)
from openmm_flashmd.data.generate import SimulationError, generate


@pytest.fixture(scope="module")
def dimer_file(tmp_path_factory):
    system, top, pos = diatomics()
    path = tmp_path_factory.mktemp("data") / "dimers.h5"
    generate(path, system, pos, n_segments=4, **FAST)
    return path


# ----------------------------------------------------------------------- schema / generate

def test_schema_round_trip(dimer_file):
    data = load_trajectories(dimer_file)
    assert data.positions.shape == (4, 51, 8, 3)
    assert data.velocities.shape == data.forces.shape == data.positions.shape
    assert data.potential_energy.shape == (4, 51)
    assert data.box.shape == (4, 51, 3, 3) and not data.box.any()  # not periodic -> zeros
    assert np.allclose(data.masses, 12.011)
    assert data.atomic_numbers.tolist() == [6] * 8  # guessed from masses
    assert data.record_interval == pytest.approx(0.004) and data.timestep == pytest.approx(0.0005)
    assert data.temperature == 300.0 and not data.periodic and not data.constraints_active
    assert len(data.sha256) == 64
    with schema.open_trajectory_file(dimer_file) as f:
        attrs = schema.read_attrs(f)
        assert attrs["format"] == schema.FORMAT_NAME and attrs["format_version"] == schema.FORMAT_VERSION
        assert "openmm" in attrs["package_versions"] and attrs["description"].startswith("OpenMM System")
        pdb = app.PDBFile(io.StringIO(schema.read_string(f, "topology_pdb")))
        assert pdb.topology.getNumAtoms() == 8
        system = openmm.XmlSerializer.deserialize(schema.read_string(f, "system_xml"))
        assert system.getNumParticles() == 8
        assert f["segment_complete"][()].tolist() == [1, 1, 1, 1]
    # NVE segments: total energy conserved to a small fraction of the kinetic energy
    kinetic = 0.5 * np.einsum("sfni,n->sf", data.velocities ** 2, data.masses)
    total = kinetic + data.potential_energy
    assert np.max(total.std(axis=1)) < 1e-3 * kinetic.mean()
    # forces are minus the gradient: check F = m a from the trajectory (central difference)
    dt = data.record_interval
    acc = (data.velocities[:, 2:] - data.velocities[:, :-2]) / (2 * dt)
    f_over_m = data.forces[:, 1:-1] / data.masses[None, None, :, None]
    assert np.abs(acc - f_over_m).max() < 0.02 * np.abs(f_over_m).max()


def test_velocities_are_synchronous_with_positions(tmp_path):
    system, top, pos = diatomics(n_mol=2)
    path = tmp_path / "sync.h5"
    generate(path, system, pos, n_segments=1, **{**FAST, "record_interval": 0.0005, "segment_length": 0.02})
    data = load_trajectories(path)
    dt = data.record_interval
    central = (data.positions[0, 2:] - data.positions[0, :-2]) / (2 * dt)
    v = data.velocities[0, 1:-1]
    # leap-frog half-step velocities would be off by ~a dt/2 ~ 1e-2 |v|; velocity Verlet matches to O(dt^2)
    assert np.abs(central - v).max() < 1e-3 * np.abs(v).max()


def test_inputs_from_files_and_constraints(tmp_path):
    system, top, pos = diatomics(n_mol=2, constrained=True)
    xml = tmp_path / "system.xml"
    xml.write_text(openmm.XmlSerializer.serialize(system))
    pdb = tmp_path / "start.pdb"
    with open(pdb, "w") as f:
        app.PDBFile.writeFile(top, pos * 10 * unit.angstrom, f)
    out = generate(tmp_path / "c.h5", str(xml), str(pdb), n_segments=2, **FAST)
    data = load_trajectories(out)
    assert data.constraints_active and data.constraints.shape == (2, 3)
    for i, j, d in data.constraints:
        r = np.linalg.norm(data.positions[:, :, int(i)] - data.positions[:, :, int(j)], axis=-1)
        assert np.abs(r - d).max() < 1e-6
        dv = data.velocities[:, :, int(i)] - data.velocities[:, :, int(j)]
        dr = data.positions[:, :, int(i)] - data.positions[:, :, int(j)]
        assert np.abs((dv * dr).sum(-1)).max() < 1e-5  # velocity constraints hold too
    with h5py.File(out) as f:
        assert bool(f.attrs["constraints_active"])
    # a State XML as structure
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos)
    state_xml = tmp_path / "state.xml"
    state_xml.write_text(openmm.XmlSerializer.serialize(ctx.getState(getPositions=True)))
    out2 = generate(tmp_path / "c2.h5", system, str(state_xml), n_segments=1, **FAST)
    assert load_trajectories(out2).n_segments == 1


def test_builtin_name_and_periodic_box(tmp_path):
    out = generate(tmp_path / "ar.h5", "argon", n_segments=1, segment_length=0.02, thermalize=0.02,
                   decorrelate=0.0, timestep=0.002, record_interval=0.004, platform="Reference", progress=False)
    data = load_trajectories(out)
    assert data.periodic and data.atomic_numbers.tolist() == [18] * 64
    edge = data.box[0, 0, 0, 0]
    assert edge > 0 and np.allclose(data.box[0, 0], np.eye(3) * edge)
    assert data.attrs["system_name"] == "argon" and "argon" in data.attrs["description"]


def test_resume_matches_uninterrupted_run(tmp_path):
    # CPU platform: its Langevin random streams are per Context (Reference shares one
    # process-wide generator, so there a resumed run is equivalent but not bitwise equal)
    system, top, pos = diatomics()
    cpu = {**FAST, "platform": "CPU"}
    full = generate(tmp_path / "full.h5", system, pos, n_segments=3, **cpu)
    part = tmp_path / "part.h5"
    generate(part, system, pos, n_segments=3, max_new_segments=1, **cpu)
    with h5py.File(part) as f:
        assert f["segment_complete"][()].tolist() == [1, 0, 0]
    with pytest.raises(FileExistsError):
        generate(part, system, pos, n_segments=3, **cpu)
    generate(part, resume=True, progress=False, platform="CPU")  # system and settings come from the file
    a, b = load_trajectories(full), load_trajectories(part)
    assert b.n_segments == 3
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.velocities, b.velocities)
    # extend to more segments
    generate(part, resume=True, n_segments=5, progress=False)
    assert load_trajectories(part).n_segments == 5
    with pytest.raises(ValueError, match="differs"):
        generate(part, resume=True, timestep=0.001, n_segments=6, progress=False)
    with pytest.raises(ValueError, match="shrink"):
        generate(part, resume=True, n_segments=2, progress=False)


def test_overwrite(tmp_path):
    system, top, pos = diatomics(n_mol=1)
    path = tmp_path / "o.h5"
    generate(path, system, pos, n_segments=1, **FAST)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(path, system, pos, n_segments=2, **FAST)
    generate(path, system, pos, n_segments=2, overwrite=True, **FAST)
    assert load_trajectories(path).n_segments == 2


def test_generation_errors(tmp_path):
    system, top, pos = diatomics(n_mol=1)
    with pytest.raises(ValueError, match="positive integer"):
        generate(tmp_path / "a.h5", system, pos, n_segments=1, **{**FAST, "record_interval": 0.0007})
    with pytest.raises(ValueError, match="positions"):
        generate(tmp_path / "b.h5", system, pos[:1], n_segments=1, **FAST)
    with pytest.raises(ValueError, match="temperature"):
        generate(tmp_path / "c.h5", system, pos, n_segments=1, segment_length=0.02)
    with pytest.raises(FileNotFoundError):
        generate(tmp_path / "d.h5", "no-such-system", pos, **FAST)
    # a timestep far too large for the bond blows up: a clear error, no complete segment
    stiff, _, pos2 = diatomics(n_mol=1, k=5.0e7)
    with pytest.raises(SimulationError, match="non-finite|OpenMM failed"):
        generate(tmp_path / "e.h5", stiff, pos2, n_segments=1, minimize=False,
                 **{**FAST, "timestep": 0.004, "record_interval": 0.004, "segment_length": 2.0, "thermalize": 0.0})


def test_foreign_and_corrupt_files(tmp_path, dimer_file):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"this is not HDF5" * 10)
    with pytest.raises(schema.TrajectoryFormatError, match="HDF5"):
        load_trajectories(junk)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.attrs["format"] = "something-else"
        f["positions"] = np.zeros((1, 2, 3))
    with pytest.raises(schema.TrajectoryFormatError, match="not an openmm-flashmd"):
        load_trajectories(foreign)
    with pytest.raises(schema.TrajectoryFormatError):
        generate(foreign, resume=True, progress=False)
    # truncated copy of a real file
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(dimer_file.read_bytes()[:4000])
    with pytest.raises(schema.TrajectoryFormatError):
        load_trajectories(trunc)
    # future version
    newer = tmp_path / "newer.h5"
    newer.write_bytes(dimer_file.read_bytes())
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = schema.FORMAT_VERSION + 1
    with pytest.raises(schema.TrajectoryFormatError, match="version"):
        load_trajectories(newer)
    with pytest.raises(FileNotFoundError):
        load_trajectories(tmp_path / "missing.h5")


def test_missing_velocities_and_nan(tmp_path, dimer_file):
    novel = tmp_path / "novel.h5"
    novel.write_bytes(dimer_file.read_bytes())
    with h5py.File(novel, "r+") as f:
        del f["velocities"]
    with pytest.raises(schema.TrajectoryFormatError, match="velocities"):
        load_trajectories(novel)
    nan = tmp_path / "nan.h5"
    nan.write_bytes(dimer_file.read_bytes())
    with h5py.File(nan, "r+") as f:
        f["velocities"][1, 3, 2, 0] = np.nan
    with pytest.raises(DataError, match="non-finite value in velocities .segment 1, frame 3"):
        load_trajectories(nan)


# ---------------------------------------------------------------------------- dataset

def test_stride_frames():
    assert stride_frames(0.016, 0.004) == 4
    assert stride_frames(0.004, 0.004) == 1
    with pytest.raises(DataError, match="multiple"):
        stride_frames(0.006, 0.004)
    with pytest.raises(DataError, match="multiple"):
        stride_frames(0.0, 0.004)
    with pytest.raises(DataError, match="longer than a segment"):
        stride_frames(0.4, 0.004, frames_per_segment=51)


def test_pairs_and_time_reversal(dimer_file):
    data = load_trajectories(dimer_file)
    ds = StridePairs(data, [0.008, 0.032], time_reversal=True)
    s, f = data.n_segments, data.frames_per_segment
    n_pairs = s * (f - 2) + s * (f - 8)
    assert len(ds) == 2 * n_pairs
    for index in (0, 5, n_pairs - 1, n_pairs + 7, 2 * n_pairs - 1):
        item = ds[index]
        seg, a, b, k = ds.pairs[index % n_pairs]
        assert b - a == (2 if k == 0 else 8)
        assert item["stride"] == pytest.approx((b - a) * 0.004)
        if index < n_pairs:
            np.testing.assert_allclose(item["positions"], data.positions[seg, a])
            np.testing.assert_allclose(item["velocities"], data.velocities[seg, a])
            np.testing.assert_allclose(item["new_positions"], data.positions[seg, b])
            np.testing.assert_allclose(item["new_velocities"], data.velocities[seg, b])
            assert not item["reversed"]
        else:  # (q', -v') -> (q, -v)
            np.testing.assert_allclose(item["positions"], data.positions[seg, b])
            np.testing.assert_allclose(item["velocities"], -data.velocities[seg, b])
            np.testing.assert_allclose(item["new_positions"], data.positions[seg, a])
            np.testing.assert_allclose(item["new_velocities"], -data.velocities[seg, a])
            assert item["reversed"]
    with pytest.raises(DataError):
        StridePairs(data, 0.01)
    with pytest.raises(IndexError):
        ds.get_batch([len(ds)])


def test_rollout_items_carry_the_following_strides(dimer_file):
    data = load_trajectories(dimer_file)
    ds = StridePairs(data, 0.008, time_reversal=True, rollout=3)  # k = 2 frames per stride
    s, f = data.n_segments, data.frames_per_segment
    n_pairs = s * (f - 6)
    assert len(ds) == 2 * n_pairs
    for index in (0, n_pairs - 1, n_pairs, 2 * n_pairs - 1):
        item = ds[index]
        seg, a = ds.pairs[index % n_pairs][:2]
        frames = [a, a + 2, a + 4, a + 6]
        sign = 1.0
        if index >= n_pairs:  # the same four frames backwards, velocities negated
            frames, sign = frames[::-1], -1.0
        np.testing.assert_allclose(item["positions"], data.positions[seg, frames[0]])
        np.testing.assert_allclose(item["velocities"], sign * data.velocities[seg, frames[0]])
        np.testing.assert_allclose(item["new_positions"], data.positions[seg, frames[1]])
        np.testing.assert_allclose(item["new_velocities"], sign * data.velocities[seg, frames[1]])
        assert item["rollout_positions"].shape == (2, data.n_atoms, 3)
        np.testing.assert_allclose(item["rollout_positions"], data.positions[seg, frames[2:]])
        np.testing.assert_allclose(item["rollout_velocities"], sign * data.velocities[seg, frames[2:]])
    # rotated items: one orthogonal map for the whole rollout
    plain = StridePairs(data, 0.008, rollout=2)
    rot = StridePairs(data, 0.008, rollout=2, random_rotations=True, generator=torch.Generator().manual_seed(2))
    idx = np.arange(0, len(plain), 5)
    x, y = plain.get_batch(idx), rot.get_batch(idx)
    for i in range(len(idx)):
        r, *_ = np.linalg.lstsq(x["positions"][i].numpy(), y["positions"][i].numpy(), rcond=None)
        for key in ("rollout_positions", "rollout_velocities"):
            np.testing.assert_allclose(x[key][i].numpy() @ r, y[key][i].numpy(), atol=1e-9)
    assert "rollout_positions" not in StridePairs(data, 0.008).get_batch([0])
    with pytest.raises(DataError, match="rollout"):
        StridePairs(data, 0.008, rollout=0)


def test_random_rotations(dimer_file):
    data = load_trajectories(dimer_file)
    plain = StridePairs(data, 0.016)
    rot = StridePairs(data, 0.016, random_rotations=True, generator=torch.Generator().manual_seed(1))
    idx = np.arange(0, len(plain), 7)
    a, b = plain.get_batch(idx), rot.get_batch(idx)
    # the same orthogonal map for all four arrays of a pair: recover it from positions
    for i in range(len(idx)):
        x = a["positions"][i].numpy()
        y = b["positions"][i].numpy()
        r, *_ = np.linalg.lstsq(x, y, rcond=None)  # y = x R^T  ->  r = R^T
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-8)
        for key in ("velocities", "new_positions", "new_velocities"):
            np.testing.assert_allclose(a[key][i].numpy() @ r, b[key][i].numpy(), atol=1e-9)
    mats = random_orthogonal(2000, torch.Generator().manual_seed(0))
    dets = torch.linalg.det(mats)
    assert torch.allclose(dets.abs(), torch.ones(2000, dtype=dets.dtype))
    assert 800 < int((dets < 0).sum()) < 1200  # improper ones (with inversion) about half
    assert torch.allclose(mats @ mats.transpose(1, 2), torch.eye(3, dtype=mats.dtype).expand(2000, 3, 3), atol=1e-12)
    # periodic box rotates with the positions
    box = torch.eye(3, dtype=torch.float64).expand(4, 3, 3) * 2.0
    rmat = random_orthogonal(4, torch.Generator().manual_seed(3))
    rotated = torch.bmm(box, rmat.transpose(1, 2))
    assert torch.allclose(torch.linalg.det(rotated).abs(), torch.full((4,), 8.0, dtype=torch.float64))


def test_split_by_segment(dimer_file):
    train, val = split_segments(10, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert set(train) | set(val) == set(range(10)) and not set(train) & set(val)
    assert split_segments(10, 0.2, seed=3)[1].tolist() == val.tolist()  # reproducible
    assert len(split_segments(3, 0.01)[1]) == 1  # at least one
    assert len(split_segments(5, 0.0)[1]) == 0
    with pytest.raises(DataError):
        split_segments(1, 0.1)
    data = load_trajectories(dimer_file)
    tr, va = split_segments(data.n_segments, 0.25, seed=0)
    ds_tr, ds_va = StridePairs(data, 0.008, tr), StridePairs(data, 0.008, va)
    assert set(ds_tr.pairs[:, 0]) == set(tr) and set(ds_va.pairs[:, 0]) == set(va)
    assert len(ds_tr) + len(ds_va) == len(StridePairs(data, 0.008))


def test_a_kill_at_any_point_of_a_segment_write_resumes_to_the_same_data(tmp_path):
    """The two windows a SIGKILL can hit while a segment is stored: after the next start state
    was written but before the segment was flagged done (it must not be run again from that
    state), and inside the replacement of the start state (old one unlinked, new one not yet
    renamed). Both resume to the data of an uninterrupted run (CPU platform: bitwise)."""
    from openmm_flashmd.data import schema

    system, top, pos = diatomics()
    cpu = {**FAST, "platform": "CPU"}
    full = generate(tmp_path / "full.h5", system, pos, n_segments=3, **cpu)
    flag_lost = tmp_path / "flag_lost.h5"
    generate(flag_lost, system, pos, n_segments=3, max_new_segments=1, **cpu)
    with h5py.File(flag_lost, "r+") as f:
        assert schema.string_attribute(f, "resume_state", "segment") == 1
        f["segment_complete"][0] = 0  # the flag never reached the disk
    half_renamed = tmp_path / "half_renamed.h5"
    generate(half_renamed, system, pos, n_segments=3, max_new_segments=2, **cpu)
    with h5py.File(half_renamed, "r+") as f:
        f.move("resume_state", "resume_state.next")  # unlinked, the new one not renamed yet
    for path in (flag_lost, half_renamed):
        generate(path, resume=True, progress=False, platform="CPU")
        a, b = load_trajectories(full), load_trajectories(path)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.velocities, b.velocities)
        with h5py.File(path) as f:
            assert f["segment_complete"][()].tolist() == [1, 1, 1] and "resume_state.next" not in f
