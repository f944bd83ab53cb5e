"""Small TorchScript stride models for integrator tests."""

from typing import Optional, Tuple

import torch

from openmm_flashmd.model.protocol import make_metadata_json


class SoftPairStrideModel(torch.nn.Module):
    """One explicit Euler step of a soft repulsive pair force, with minimum image.

    Not a physical flow: it only needs to depend on interparticle vectors through
    the cell, so tests see that periodic images and re-wrapping are handled.
    """

    def __init__(self, stride: float, cutoff: float = 0.6):
        super().__init__()
        self.stride = stride
        self.cutoff = cutoff
        self.metadata_json = make_metadata_json(kind="toy-pair", cutoff=cutoff)

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        x = positions.to(torch.float64)
        v = velocities.to(torch.float64)
        d = x.unsqueeze(0) - x.unsqueeze(1)  # d[i, j] = x_j - x_i
        if bool(box.abs().sum() > 0):
            cell = box.to(torch.float64)
            d = d - torch.round(d @ torch.linalg.inv(cell)) @ cell
        r2 = (d * d).sum(-1)
        weight = torch.clamp(1.0 - r2 / self.cutoff**2, min=0.0) ** 2
        weight = weight * (1.0 - torch.eye(x.shape[0], dtype=x.dtype))
        force = -(weight.unsqueeze(-1) * d).sum(1) * 50.0
        new_v = v + self.stride * force / masses.to(torch.float64).unsqueeze(1)
        new_x = x + self.stride * new_v
        return new_x.to(positions.dtype), new_v.to(positions.dtype)


class NaNAfterStrideModel(torch.nn.Module):
    """Free flight that returns NaN once any coordinate of moving particles exceeds ``limit`` nm
    (particles at rest, like the integrator's construction-time probe call, get free flight)."""

    def __init__(self, stride: float, limit: float):
        super().__init__()
        self.stride = stride
        self.limit = limit
        self.metadata_json = make_metadata_json(kind="toy-nan")

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        new_x = positions + self.stride * velocities
        if bool(positions.abs().max() > self.limit) and bool(velocities.abs().max() > 0):
            new_x = new_x * float("nan")
        return new_x, velocities.clone()


class EveryKthStrideFails(torch.nn.Module):
    """A stride model whose every ``k``-th call (counted over the module's life) goes wrong:
    NaN positions, or with ``velocity_factor`` > 0 the velocities multiplied by it, or with
    ``bent_water`` >= 0 the oxygen at that index (followed by its two hydrogens) moved 0.2 nm
    out of its water's plane: SETTLE cannot constrain that, whatever the orientation. A call
    with every particle at rest (the integrator's probe at construction) passes through
    uncounted."""

    def __init__(self, model: torch.nn.Module, k: int, velocity_factor: float = 0.0, bent_water: int = -1):
        super().__init__()
        self.model = model
        self.stride = float(model.stride)
        self.metadata_json = model.metadata_json
        self.k = int(k)
        self.velocity_factor = float(velocity_factor)
        self.bent_water = int(bent_water)
        self.calls = 0

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        new_x, new_v = self.model(positions, velocities, masses, atomic_numbers, box)
        if not bool(velocities.abs().max() > 0):
            return new_x, new_v
        self.calls += 1
        if self.calls % self.k == 0:
            if self.bent_water >= 0:
                o = self.bent_water
                normal = torch.linalg.cross(positions[o + 1] - positions[o], positions[o + 2] - positions[o])
                new_x[o] += 0.2 * normal / torch.linalg.norm(normal)
                return new_x, new_v
            if self.velocity_factor > 0.0:
                return new_x, new_v * self.velocity_factor
            return new_x * float("nan"), new_v
        return new_x, new_v


class BadOutputModel(torch.nn.Module):
    """Free flight whose outputs break the protocol in one way (``kind``): ``"broadcast"``
    velocities of shape [3], ``"extra"`` an extra row, ``"integer"`` int64 positions, ``"nan"``
    NaN positions, ``"raise"`` an exception."""

    def __init__(self, stride: float, kind: str):
        super().__init__()
        self.stride = stride
        self.kind = kind
        self.metadata_json = make_metadata_json(kind="toy-bad-output")

    def forward(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        masses: torch.Tensor,
        atomic_numbers: torch.Tensor,
        box: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        new_x = positions + self.stride * velocities
        if self.kind == "broadcast":
            return new_x, velocities.mean(0)
        if self.kind == "extra":
            return torch.cat([new_x, new_x[:1]]), velocities.clone()
        if self.kind == "integer":
            return new_x.to(torch.int64), velocities.clone()
        if self.kind == "nan":
            return new_x * float("nan"), velocities.clone()
        if self.kind == "raise":
            raise RuntimeError("this model is broken")
        return new_x, velocities.clone()


#: calls of the ``flashmd_test::counted`` op in forward and backward passes, and the forward
#: passes that ran with autograd on ("graph"; see :class:`CountedWell`)
PASSES = {"forward": 0, "backward": 0, "graph": 0}


@torch.library.custom_op("flashmd_test::counted", mutates_args=())
def _counted(x: torch.Tensor, graph: bool) -> torch.Tensor:
    PASSES["forward"] += 1
    PASSES["graph"] += int(graph)
    return x.clone()


@_counted.register_fake
def _(x, graph):
    return torch.empty_like(x)


def _counted_backward(ctx, grad):
    PASSES["backward"] += 1
    return grad, None


_counted.register_autograd(_counted_backward)


class CountedWell(torch.nn.Module):
    """A harmonic well 0.5 k |x|^2 (kJ/mol, k in kJ/mol/nm^2) for a ``TorchForce`` that counts
    its forward and backward passes in :data:`PASSES` (openmm-torch runs the backward pass only
    when OpenMM asks for forces, but always hands over positions that require grad). Give the
    force the global parameter ``flashmd_energy_only`` and it honours it: no autograd graph
    while it is 1."""

    def __init__(self, k: float = 100.0):
        super().__init__()
        self.k = k

    def forward(self, positions: torch.Tensor, energy_only: Optional[torch.Tensor] = None) -> torch.Tensor:
        if energy_only is not None and bool(energy_only > 0.5):
            with torch.no_grad():
                energy = self.well(positions)
            return energy
        return self.well(positions)

    def well(self, positions: torch.Tensor) -> torch.Tensor:
        counted = torch.ops.flashmd_test.counted(positions, torch.is_grad_enabled() and positions.requires_grad)
        return 0.5 * self.k * (counted ** 2).sum()
