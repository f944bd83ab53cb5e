"""The README's benchmark section is what benchmarks/report.py renders from the committed JSON."""

from flashmd_data_helpers import ROOT, load_benchmark


def test_the_readme_benchmark_section_is_rendered_from_the_committed_results():
    report = load_benchmark("report")
    readme = (ROOT / "README.md").read_text()
    section = readme.split(report.START, 1)[1].split(report.END, 1)[0]
    assert section.strip() == report.render_all().strip(), "run python benchmarks/report.py"
