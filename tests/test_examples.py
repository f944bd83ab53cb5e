"""The runnable examples, with tiny settings (slow: select with ``-m slow``)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_mlip_chain_quick(tmp_path):
    """classical reference -> MLIP -> MLIP-MD data -> stride model -> FlashMD with the MLIP filter."""
    out = tmp_path / "chain"
    script = str(EXAMPLES / "mlip_chain.py")
    proc = subprocess.run([sys.executable, script, str(out), "--quick"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("reference.h5", "mlip/model.pt", "mlip_md.h5", "stride/model.pt", "flashmd_log.csv"):
        assert (out / name).exists(), name
    assert "energy filter:" in proc.stdout and "mean temperature" in proc.stdout
    # an existing output directory is refused without --overwrite
    again = subprocess.run([sys.executable, script, str(out), "--quick"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "--overwrite" in again.stderr


@pytest.mark.slow
def test_bundled_water_example_runs():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "bundled_water.py"), "--strides", "20"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "20 strides = 0.32 ps" in proc.stdout and "energy filter:" in proc.stdout
