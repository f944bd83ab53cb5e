"""Saving, loading and reading stride models."""

import pytest
import torch

from openmm_flashmd import load_model, read_metadata, save_model
from openmm_flashmd.model import FreeParticleStrideModel, HarmonicStrideModel, ModelProtocolError
from openmm_flashmd.model.protocol import make_metadata_json


def test_save_load_round_trip(tmp_path):
    model = HarmonicStrideModel(0.004, 250.0, velocity_error=0.01)
    path = save_model(model, tmp_path / "m.pt")
    loaded = load_model(path)
    meta = read_metadata(loaded)
    assert meta["stride"] == 0.004 and meta["kind"] == "harmonic"
    assert meta["hypers"]["spring_constant"] == 250.0
    x, v = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    args = (torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.int64), torch.zeros(3, 3))
    for a, b in zip(model(x, v, *args), loaded(x, v, *args)):
        assert torch.equal(a, b)


def test_save_refuses_to_overwrite(tmp_path):
    save_model(FreeParticleStrideModel(0.01), tmp_path / "m.pt")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_model(FreeParticleStrideModel(0.02), tmp_path / "m.pt")
    save_model(FreeParticleStrideModel(0.02), tmp_path / "m.pt", overwrite=True)
    assert read_metadata(load_model(tmp_path / "m.pt"))["stride"] == 0.02


def test_bad_models_and_files_are_clear_errors(tmp_path):
    class NoStride(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(ModelProtocolError, match="no 'stride' attribute"):
        load_model(NoStride())
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torchscript archive")
    with pytest.raises(ModelProtocolError, match="is not a TorchScript stride model"):
        load_model(corrupt)
    with pytest.raises(FileNotFoundError, match="no model file or bundled model named 'nope'"):
        load_model("nope")
    with pytest.raises(ModelProtocolError, match="unknown metadata keys"):
        make_metadata_json(colour="blue")
