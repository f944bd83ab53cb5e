"""``openmm-flashmd validate`` on a System the package has never seen (the README's worked
example, quick form), its resume and refusals, and one-line errors for bad input."""

import json
import sys
from pathlib import Path

import pytest
from openmm import XmlSerializer, app, unit

from openmm_flashmd.cli import main
from openmm_flashmd.systems import get_system
from openmm_flashmd.validation import verdicts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import validate_your_system  # noqa: E402

QUICK = ["--lengths", "quick", "--no-stability", "--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """The example in quick form: build, generate, train 30 steps, validate."""
    out = tmp_path_factory.mktemp("example") / "saline"
    assert validate_your_system.main([str(out), "--quick"]) == 0
    return out


def _validate_args(out: Path, *extra: str):
    return ["validate", str(out / "model" / "model.pt"), "--system", str(out / "system.xml"), "--structure",
            str(out / "start.pdb"), "--cache", str(out / "reference-cache"), *QUICK, *extra]


def test_example_validates_a_new_system(pipeline):
    result = json.loads((pipeline / "validation" / "validation.json").read_text())
    assert result["system"].startswith("system-") and result["n_atoms"] == 176
    assert result["stride_ps"] == pytest.approx(0.008)
    assert {"O-O", "O-H", "H-H", "Cl-O", "Na-O"} <= set(result["rdf"])
    assert set(result["nvt"]["filter"]["temperature_K"]) == {"all", "H", "O", "Na", "Cl"}
    assert result["npt"]["flashmd"]["density_g_cm3"]["mean"] > 0
    assert result["reference"]["computed_in_this_run"] is True
    cached = list((pipeline / "reference-cache").glob(f"reference-{result['system']}-*.json"))
    assert len(cached) == 1 and cached[0].name == result["reference"]["file"]
    report = (pipeline / "validation" / "report.md").read_text()
    assert "## Can you trust this model on this System?" in report and "quick lengths" in report
    checks = verdicts(result)
    assert {"stable", "temperature", "temperature_by_element", "rdf", "density", "nve", "cost"} <= {
        c["check"] for c in checks}
    for check in checks:  # every verdict is reproduced from the JSON alone
        assert check["text"] in report
    for plot in result["plots"]:
        assert (pipeline / "validation" / plot).stat().st_size > 0


def test_existing_output_is_refused_and_an_interrupted_validation_resumes(pipeline, capsys):
    out = pipeline / "validation"
    assert main(_validate_args(pipeline, "--out", str(out))) == 1
    assert "holds a validation; pass --overwrite" in capsys.readouterr().err
    # interrupted after the NpT phase: the result and the NVE phase are missing
    phases = out / "work" / "phases"
    kept = (phases / "nvt_filter.json").stat().st_mtime_ns
    (out / "validation.json").unlink()
    (phases / "nve.json").unlink()
    assert main(_validate_args(pipeline, "--out", str(out), "--collision-rate", "10", "--resume")) == 1
    assert "other settings (collision_rate_per_ps)" in capsys.readouterr().err
    assert main(_validate_args(pipeline, "--out", str(out), "--resume")) == 0
    assert (phases / "nvt_filter.json").stat().st_mtime_ns == kept and (phases / "nve.json").exists()
    result = json.loads((out / "validation.json").read_text())
    assert result["reference"]["computed_in_this_run"] is False and result["nve"]["completed_ps"] > 0
    assert "nvt_filter" in result["reused_phases"] and "nve" not in result["reused_phases"]
    assert main(_validate_args(pipeline, "--out", str(pipeline / "fresh"), "--resume")) == 1
    assert "nothing to resume" in capsys.readouterr().err


def _write_builtin(tmp_path: Path, name: str):
    built = get_system(name)
    (tmp_path / f"{name}.xml").write_text(XmlSerializer.serialize(built.system))
    with open(tmp_path / f"{name}.pdb", "w") as handle:
        app.PDBFile.writeFile(built.topology, built.positions.value_in_unit(unit.nanometer) * 10 * unit.angstrom,
                              handle)
    return tmp_path / f"{name}.xml", tmp_path / f"{name}.pdb"


def test_bad_input_is_one_line_and_writes_nothing(pipeline, tmp_path, capsys):
    water_xml, water_pdb = _write_builtin(tmp_path, "water")
    ala_xml, ala_pdb = _write_builtin(tmp_path, "alanine-dipeptide-implicit-hbonds")
    saline = ["--system", str(pipeline / "system.xml"), "--structure", str(pipeline / "start.pdb")]
    cases = {
        "elements": (["validate", "water-rigid-8fs", *saline], "System contains elements [11, 17]"),
        "constraints": (["validate", "water-rigid-8fs", "--system", str(water_xml), "--structure", str(water_pdb)],
                        "trained on data with constraints"),
        "structure size": (["validate", str(pipeline / "model" / "model.pt"), "--system", str(pipeline / "system.xml"),
                            "--structure", str(water_pdb)], "the System has 176 particles"),
        "NpT without a box": (["validate", "alanine-dipeptide-implicit-hbonds-8fs", "--system", str(ala_xml),
                               "--structure", str(ala_pdb), "--pressure", "1"], "no periodic box"),
        "no system": (["validate", str(pipeline / "model" / "model.pt")], "cannot tell the System"),
    }
    for name, (args, message) in cases.items():
        out = tmp_path / name.replace(" ", "-")
        assert main([*args, "--out", str(out), "--cache", str(tmp_path / "cache"), *QUICK]) == 1, name
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (name, err)
        assert not out.exists() and not (tmp_path / "cache").exists(), name


def test_simulate_judges_elements_against_a_cached_validation_reference(pipeline, tmp_path, monkeypatch):
    """A user's constrained System has no bundled reference: simulate's per-element trust check
    uses the reference MD that validate cached for the same System and start structure."""
    from openmm_flashmd.simulate import simulate

    monkeypatch.setenv("OPENMM_FLASHMD_CACHE", str(pipeline / "reference-cache"))
    run = simulate(tmp_path / "run", system=str(pipeline / "system.xml"), structure=str(pipeline / "start.pdb"),
                   model=str(pipeline / "model" / "model.pt"), duration=0.08, report_interval=0.016,
                   platform="CPU", progress=False)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert Path(settings["validation_reference"]).parent == pipeline / "reference-cache"
    check = next(line for line in run.report.read_text().splitlines() if "temperature within" in line)
    assert " Na " in check and " Cl " in check and " O " in check
    monkeypatch.setenv("OPENMM_FLASHMD_CACHE", str(tmp_path / "empty"))
    simulate(tmp_path / "other", system=str(pipeline / "system.xml"), structure=str(pipeline / "start.pdb"),
             model=str(pipeline / "model" / "model.pt"), duration=0.032, report_interval=0.016, platform="CPU",
             progress=False)
    assert json.loads((tmp_path / "other" / "settings.json").read_text())["validation_reference"] is None
