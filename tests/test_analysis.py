"""Analysis helpers: block averages, Ramachandran histograms, JS divergence, basins, bootstrap."""

import math

import numpy as np
import pytest

from openmm_flashmd.analysis.dihedrals import (
    basin_populations,
    basin_statistics,
    block_bootstrap,
    jensen_shannon,
    ramachandran,
    ramachandran_histogram,
    wrap_degrees,
)
from openmm_flashmd.analysis.statistics import block_average


def test_block_average_mean_and_error():
    values = np.array([1.0, 1.0, 3.0, 3.0, 5.0, 5.0, 7.0, 7.0])
    mean, error = block_average(values, 4)
    assert mean == pytest.approx(4.0)
    assert error == pytest.approx(np.std([1, 3, 5, 7], ddof=1) / 2)
    assert math.isnan(block_average([1.0, 2.0], 4)[1]) and block_average([1.0, 2.0], 4)[0] == 1.5
    assert all(math.isnan(x) for x in block_average([], 4))
    # independent samples: the block error estimates sigma / sqrt(n)
    rng = np.random.default_rng(0)
    _, error = block_average(rng.normal(0.0, 2.0, 40_000), 20)
    assert error == pytest.approx(2.0 / math.sqrt(40_000), rel=0.5)


def test_report_mean_and_standard_error():
    from openmm_flashmd.analysis.report import _mean_and_error

    assert _mean_and_error(np.array([1.0, 1.0, 3.0, 3.0, 5.0, 5.0, 7.0, 7.0])) == "4.0 ± 1.3"
    assert _mean_and_error(np.array([2.0, 4.0])) == "3.0"


def test_histogram_and_jensen_shannon():
    rng = np.random.default_rng(1)
    phi, psi = rng.uniform(-180, 180, 1000), rng.uniform(-180, 180, 1000)
    hist = ramachandran_histogram(phi, psi)
    assert hist.shape == (36, 36) and hist.sum() == pytest.approx(1.0)
    edge = ramachandran_histogram([180.0], [-180.0])  # 180 wraps to -180: the first bin
    assert edge[0, 0] == 1.0
    assert jensen_shannon(hist, hist) == pytest.approx(0.0, abs=1e-12)
    a = ramachandran_histogram([-100.0] * 10, [-50.0] * 10)
    b = ramachandran_histogram([60.0] * 10, [30.0] * 10)
    assert jensen_shannon(a, b) == pytest.approx(math.log(2.0))
    partial = jensen_shannon(a, 0.5 * a + 0.5 * b)
    assert 0.0 < partial < math.log(2.0) and jensen_shannon(0.5 * a + 0.5 * b, a) == pytest.approx(partial)
    with pytest.raises(ValueError):
        jensen_shannon(np.zeros((2, 2)), np.ones((2, 2)))


def test_basin_populations_of_synthetic_angles():
    phi = np.array([-60.0, -60.0, -150.0, -70.0, 60.0, 170.0, -60.0, 190.0])
    psi = np.array([-45.0, 50.0, 150.0, -130.0, 40.0, -170.0, 51.0, 0.0])
    # alpha_R: (-60,-45), (-60,50) (psi = 50 is inside) and (190 -> -170, 0);
    # beta_PPII: (-150,150), (-70,-130), (-60,51); alpha_L: (60,40), (170,-170)
    pops = basin_populations(phi, psi)
    assert pops == pytest.approx({"alpha_R": 3 / 8, "beta_PPII": 3 / 8, "alpha_L": 2 / 8})
    assert sum(pops.values()) == pytest.approx(1.0)
    assert wrap_degrees(180.0) == -180.0


def test_block_bootstrap_error_shrinks_with_more_data():
    rng = np.random.default_rng(2)

    def error(n):
        _, se = block_bootstrap(np.mean, rng.normal(size=n), n_blocks=20, n_resamples=300, seed=3)
        return se

    small, large = error(400), error(40_000)
    assert small == pytest.approx(1 / math.sqrt(400), rel=0.4)
    assert large == pytest.approx(1 / math.sqrt(40_000), rel=0.4)
    assert large < small / 5

    phi = rng.uniform(-180, 180, 2000)
    psi = rng.uniform(-180, 180, 2000)
    value, se = block_bootstrap(basin_populations, phi, psi, n_resamples=100)
    assert set(value) == set(se) == {"alpha_R", "beta_PPII", "alpha_L"}
    assert value == basin_populations(phi, psi) and all(0 < s < 0.05 for s in se.values())


def test_basin_statistics_keep_the_extended_basin_whole_across_180_degrees():
    # extended frames at psi 170 and -170 (= 190): one basin around 180, not two halves 340 degrees apart
    phi = np.array([-70.0, -70.0, -60.0, -80.0, 60.0])
    psi = np.array([170.0, -170.0, -40.0, -50.0, 30.0])
    stats = basin_statistics(phi, psi)
    assert stats["beta_PPII"]["population"] == pytest.approx(0.4)
    assert stats["beta_PPII"]["psi_mean"] == pytest.approx(180.0) and stats["beta_PPII"]["psi_sd"] == pytest.approx(10.0)
    assert stats["alpha_R"]["population"] == pytest.approx(0.4)
    assert stats["alpha_R"]["phi_mean"] == pytest.approx(-70.0) and stats["alpha_R"]["phi_sd"] == pytest.approx(10.0)
    assert stats["alpha_R"]["population"] == basin_populations(phi, psi)["alpha_R"]
    empty = basin_statistics(np.array([60.0]), np.array([30.0]))
    assert empty["alpha_R"]["population"] == 0.0 and math.isnan(empty["alpha_R"]["psi_sd"])


def test_window_divergences_cut_a_run_into_disjoint_windows():
    from openmm_flashmd.validation.compare import ramachandran_js, window_divergences

    rng = np.random.default_rng(3)
    phi_ref, psi_ref = rng.uniform(-180, 180, 500), rng.uniform(-180, 180, 500)
    # a run that is the reference in its first 100 frames, then sits in one basin
    phi = np.concatenate([phi_ref[:100], np.full(150, -60.0)])
    psi = np.concatenate([psi_ref[:100], np.full(150, -45.0)])
    values = window_divergences(phi, psi, phi_ref, psi_ref, 100)
    assert len(values) == 2  # the last 50 frames are no whole window
    assert values[0] == pytest.approx(ramachandran_js(phi_ref[:100], psi_ref[:100], phi_ref, psi_ref))
    assert values[1] > values[0] and values[1] == pytest.approx(
        ramachandran_js(phi[100:200], psi[100:200], phi_ref, psi_ref))
    assert window_divergences(phi_ref, psi_ref, phi_ref, psi_ref, 500) == [pytest.approx(0.0, abs=1e-12)]
    with pytest.raises(ValueError, match="at least one frame"):
        window_divergences(phi, psi, phi_ref, psi_ref, 0)


def test_ramachandran_of_alanine_dipeptide():
    import mdtraj

    from openmm_flashmd.systems import get_system

    built = get_system("alanine-dipeptide-implicit")
    xyz = np.asarray(built.positions.value_in_unit(built.positions.unit))[None]
    traj = mdtraj.Trajectory(xyz, mdtraj.Topology.from_openmm(built.topology))
    phi, psi = ramachandran(traj)
    assert phi.shape == psi.shape == (1, 1)
    assert np.all((phi >= -180) & (phi < 180)) and np.all((psi >= -180) & (psi < 180))
    _, phi_md = mdtraj.compute_phi(traj)
    assert phi[0, 0] == pytest.approx(wrap_degrees(np.degrees(phi_md[0, 0])))


# ------------------------------------------------------------------------ transport

def _argon_trajectory(xyz, cells, dt_ps):
    import mdtraj

    top = mdtraj.Topology()
    chain = top.add_chain()
    for _ in range(xyz.shape[1]):
        top.add_atom("Ar", mdtraj.element.argon, top.add_residue("AR", chain))
    traj = mdtraj.Trajectory(xyz.astype(np.float32), top, time=np.arange(len(xyz)) * dt_ps)
    traj.unitcell_vectors = cells.astype(np.float32)
    return traj


def _wrap(xyz, cell):
    frac = xyz @ np.linalg.inv(cell)
    return (frac - np.floor(frac)) @ cell


def test_unwrap_restores_straight_lines_in_a_triclinic_box():
    from openmm_flashmd.analysis.transport import unwrap

    cell = np.array([[2.0, 0.0, 0.0], [0.6, 1.8, 0.0], [-0.4, 0.5, 1.7]])
    t = np.arange(60) * 0.1
    velocity = np.array([[0.9, -0.7, 0.5], [-0.3, 0.8, 1.1]])  # nm/ps: crosses every face several times
    start = np.array([[0.3, 0.4, 0.5], [1.0, 0.9, 0.2]])
    straight = start[None] + t[:, None, None] * velocity[None]
    wrapped = _wrap(straight, cell)
    assert np.abs(wrapped - straight).max() > 1.0  # the wrapping really moved atoms
    traj = _argon_trajectory(wrapped, np.repeat(cell[None], len(t), 0), 0.1)
    np.testing.assert_allclose(unwrap(traj, [0, 1]), straight - straight[:1] + wrapped[:1], atol=1e-5)


def test_self_diffusion_recovers_a_random_walk():
    """Brownian walkers with D = 0.005 nm^2/ps, wrapped into a 2 nm box: the estimate is
    within 10 % (about 4 standard errors here), and a walk at 4 D gives 4 times as much."""
    from openmm_flashmd.analysis.transport import self_diffusion

    rng = np.random.default_rng(1)
    cell = 2.0 * np.eye(3)
    dt, frames, n = 0.1, 600, 300
    estimates = []
    for diffusion in (0.005, 0.02):
        steps = rng.normal(scale=math.sqrt(2 * diffusion * dt), size=(frames - 1, n, 3))
        xyz = rng.uniform(0, 2, (1, n, 3)) + np.concatenate([np.zeros((1, n, 3)), np.cumsum(steps, 0)])
        traj = _argon_trajectory(_wrap(xyz, cell), np.repeat(cell[None], frames, 0), dt)
        estimates.append(self_diffusion(traj, "element Ar", fit_ps=(1.0, 5.0)))
    assert estimates[0] == pytest.approx(0.005, rel=0.1)
    assert estimates[1] == pytest.approx(0.02, rel=0.1)
    with pytest.raises(ValueError, match="matches no atoms"):
        self_diffusion(traj, "element O")
    with pytest.raises(ValueError, match="fit window"):
        self_diffusion(traj, "element Ar", fit_ps=(1.0, 100.0))


def test_temperature_check_explains_elements_drifting_apart():
    from openmm_flashmd.analysis.report import temperature_check

    expected = {"all": 300.0, "H": 300.0, "O": 300.0}
    ok, text, advice = temperature_check({"all": 301.0, "H": 298.0, "O": 303.5}, expected)
    assert ok and "worst: O +3.5 K" in text and advice == []
    ok, text, advice = temperature_check({"all": 302.0, "H": 200.0, "O": 500.0}, expected)
    assert not ok and "worst: O +200.0 K" in text and "--collision-rate" in advice[0]
    ok, _, advice = temperature_check({"all": 400.0, "H": 400.0, "O": 400.0}, expected)
    assert not ok and advice == []  # a run that is simply too hot gets no equipartition advice


def test_temperature_check_does_not_pass_a_window_too_noisy_to_resolve_its_threshold():
    from openmm_flashmd.analysis.report import MAX_TEMPERATURE_DEVIATION, TEMPERATURE_CONFIDENCE, temperature_check

    expected = {"all": 300.0, "H": 300.0, "O": 300.0}
    means = {"all": 301.0, "H": 298.0, "O": 303.5}
    resolvable = MAX_TEMPERATURE_DEVIATION / TEMPERATURE_CONFIDENCE
    ok, text, _ = temperature_check(means, expected, {"all": 1.0, "H": 1.5, "O": resolvable}, 50.0)
    assert ok is True and "±2.5 K" in text
    ok, text, _ = temperature_check(means, expected, {"all": 1.0, "H": 1.5, "O": 2 * resolvable}, 5.0)
    # the second half of a 10 ps run would need (2 x error)^2 = 4 x the window: a 40 ps run
    assert ok is None and text.startswith("not judged") and "a run of about 40 ps" in text
    ok, text, _ = temperature_check({"all": 301.0, "H": 290.0, "O": 303.5}, expected, {"all": 9.0}, 5.0)
    assert ok is False and "±9.0 K" in text  # a deviation beyond the threshold fails, however noisy


def test_statistical_inefficiency_of_autoregressive_series():
    from scipy.signal import lfilter

    from openmm_flashmd.analysis.statistics import standard_error, statistical_inefficiency

    rng = np.random.default_rng(0)
    phi, n, realisations = 0.8, 2000, 200  # AR(1): g = (1 + phi) / (1 - phi) = 9
    series = lfilter([1.0], [1.0, -phi], rng.normal(size=(realisations, n + 500)), axis=1)[:, 500:]
    estimates = [statistical_inefficiency(s) for s in series]
    assert np.mean(estimates) == pytest.approx(9.0, rel=0.1)
    # the standard errors estimate the spread of the means across realisations
    assert np.mean([standard_error(s) for s in series]) == pytest.approx(np.std(series.mean(axis=1)), rel=0.15)
    assert statistical_inefficiency(rng.normal(size=5000)) == pytest.approx(1.0, abs=0.1)
    assert statistical_inefficiency(np.full(10, 3.0)) == 1.0 and standard_error(np.full(10, 3.0)) == 0.0
    assert math.isnan(standard_error([1.0, 2.0, 3.0]))


def _rigid_velocities(x, masses, v_cm, omega):
    """Velocities of a rigid body at ``x`` [N, 3] (nm) moving with ``v_cm`` (nm/ps) and spinning
    with ``omega`` (rad/ps) about its centre of mass."""
    centre = (masses[:, None] * x).sum(0) / masses.sum()
    return v_cm + np.cross(omega, x - centre)


def test_molecule_temperatures_separate_translation_from_rotation():
    from openmm_flashmd.analysis.thermo import KB, molecule_temperatures

    water = np.array([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    masses = np.array([15.9994, 1.008, 1.008, 15.9994, 1.008, 1.008, 39.9])  # two waters and an argon
    x = np.vstack([water, water + [0.5, 0.3, 0.2], [[1.0, 1.0, 1.0]]])
    molecules = [[0, 1, 2], [3, 4, 5], [6]]
    v = np.zeros_like(x)
    # pure translation: the rotational temperature is zero, the translational one is ½ M v² per molecule
    v[:] = [0.3, -0.2, 0.1]
    t = molecule_temperatures(x, v, masses, molecules)
    kinetic = 0.5 * masses.sum() * 0.14
    assert t["rotation"] == pytest.approx(0.0, abs=1e-9)
    assert t["translation"] == pytest.approx(2 * kinetic / (9 * KB))
    # with a CMMotionRemover the molecules' translation has 3 degrees of freedom fewer
    removed = molecule_temperatures(x, v, masses, molecules, centre_of_mass_removed=True)
    assert removed["translation"] == pytest.approx(2 * kinetic / (6 * KB))
    # pure rotation of each water about its centre of mass: no translation, all kinetic energy in rotation
    for atoms, omega in (([0, 1, 2], [1.0, 2.0, 3.0]), ([3, 4, 5], [-2.0, 0.5, 1.0])):
        v[atoms] = _rigid_velocities(x[atoms], masses[atoms], np.zeros(3), np.array(omega))
    v[6] = 0.0
    t = molecule_temperatures(x, v, masses, molecules)
    total = 0.5 * (masses[:, None] * v ** 2).sum()
    assert t["translation"] == pytest.approx(0.0, abs=1e-9)
    assert t["rotation"] == pytest.approx(2 * total / (6 * KB))
    # both at once, over frames: for rigid bodies the two parts add up to the whole kinetic energy
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(4):
        for atoms in ([0, 1, 2], [3, 4, 5]):
            v[atoms] = _rigid_velocities(x[atoms], masses[atoms], rng.normal(size=3), rng.normal(size=3))
        v[6] = rng.normal(size=3)
        frames.append(v.copy())
    frames = np.array(frames)
    t = molecule_temperatures(np.broadcast_to(x, frames.shape), frames, masses, molecules)
    total = 0.5 * np.einsum("fni,n->f", frames ** 2, masses)
    assert t["translation"].shape == (4,)
    np.testing.assert_allclose(KB * (9 * t["translation"] + 6 * t["rotation"]) / 2, total, rtol=1e-10)


def test_molecule_temperatures_of_linear_and_split_molecules():
    from openmm_flashmd.analysis.thermo import KB, molecule_temperatures

    # a diatomic spinning about an axis through both atoms has no rotational energy: 2 degrees of freedom
    x = np.array([[0.1, 0.1, 0.1], [0.2, 0.1, 0.1]])
    masses = np.array([12.0, 16.0])
    v = _rigid_velocities(x, masses, np.zeros(3), np.array([0.0, 0.0, 2.0]))
    t = molecule_temperatures(x, v, masses, [[0, 1]])
    assert t["rotation"] == pytest.approx(2 * 0.5 * (masses[:, None] * v ** 2).sum() / (2 * KB))
    assert molecule_temperatures(x, _rigid_velocities(x, masses, np.zeros(3), np.array([5.0, 0, 0])),
                                 masses, [[0, 1]])["rotation"] == pytest.approx(0.0, abs=1e-9)
    # single atoms have no rotation at all
    assert molecule_temperatures(x, v, masses, [[0], [1]])["rotation"] is None
    # a water split across a triclinic periodic box reads as the whole molecule
    box = np.array([[1.0, 0.0, 0.0], [0.3, 1.0, 0.0], [-0.2, 0.4, 1.0]])
    water = np.array([[0.99, 0.98, 0.97], [1.0857, 0.98, 0.97], [0.966, 1.0727, 0.97]])
    w_masses = np.array([15.9994, 1.008, 1.008])
    w_v = _rigid_velocities(water, w_masses, np.array([0.1, 0.2, 0.3]), np.array([1.0, -1.0, 2.0]))
    split = water.copy()  # two hydrogens moved by whole box vectors
    split[1] -= box[0] + box[1]
    split[2] -= box[2]
    whole = molecule_temperatures(water, w_v, w_masses, [[0, 1, 2]])
    wrapped = molecule_temperatures(split, w_v, w_masses, [[0, 1, 2]], box=box)
    assert wrapped["rotation"] == pytest.approx(whole["rotation"]) and wrapped["translation"] == pytest.approx(whole["translation"])
    assert molecule_temperatures(split, w_v, w_masses, [[0, 1, 2]])["rotation"] != pytest.approx(whole["rotation"])


def test_place_molecules_swaps_centres_and_orientations():
    """One frame's molecules (orientation and internal geometry) at another frame's centres of mass,
    across a periodic box; atoms in no molecule stay where they are."""
    from openmm_flashmd.analysis.molecules import centres, place_molecules

    masses = np.array([15.9994, 1.008, 1.008, 15.9994, 1.008, 1.008, 39.9])
    water = np.array([[0.0, 0.0, 0.0], [0.09572, 0.0, 0.0], [-0.024, 0.0927, 0.0]])
    shapes = np.vstack([water + 0.3, water[[0, 2, 1]] + 0.6, [[0.1, 0.2, 0.3]]])
    rng = np.random.default_rng(2)
    targets = shapes + rng.normal(scale=0.05, size=shapes.shape)
    molecules = [[0, 1, 2], [3, 4, 5]]
    box = np.diag([1.0, 1.0, 1.0])
    split = shapes.copy()
    split[1] += box[0]  # a hydrogen one box length away: the molecule is made whole first
    placed = place_molecules(split, targets, masses, molecules, box)
    for atoms in molecules:
        m = masses[atoms][None]
        assert centres(placed[None, None, atoms], m)[0, 0] == pytest.approx(centres(targets[None, None, atoms], m)[0, 0])
        internal = placed[atoms] - placed[atoms][0]
        np.testing.assert_allclose(internal, shapes[atoms] - shapes[atoms][0], atol=1e-12)
    np.testing.assert_array_equal(placed[6], split[6])
