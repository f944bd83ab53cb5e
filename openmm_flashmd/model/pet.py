"""PET (Point-Edge Transformer): a shared message-passing backbone and the stride model.

Units: nm, ps, Da, kJ/mol (so momenta are Da nm/ps and ``1 kJ/mol = 1 Da nm^2/ps^2``).

:class:`PETBackbone` (our own implementation of the ideas of PET, Pozdnyakov & Ceriotti
2023) turns positions, species, the cell and optional per-atom input features into
per-atom features, one set per message-passing layer:

* every atom ``i`` is the centre of a sequence of tokens ``[centre, edges i->j]`` over
  its neighbours ``j`` within ``cutoff``;
* an edge token is built from ``r_ij / cutoff``, ``|r_ij| / cutoff``, ``n_radial``
  radial basis functions of ``|r_ij|`` times the cutoff function (they resolve small
  changes of a bond length, which ``|r_ij| / cutoff`` alone makes hard to learn),
  species embeddings of both atoms and the per-atom input features of both atoms;
  the centre token from the species and the centre's input features;
* a per-centre transformer whose attention is *cutoff-smoothed*: the softmax
  probabilities are multiplied by ``fc(r_ij)`` (1 inside ``cutoff - cutoff_width``,
  smoothly 0 at ``cutoff``; padding 0; the centre token 1) and renormalised, so the
  outputs are continuous when a neighbour crosses the cutoff;
* ``num_gnn_layers`` message-passing layers: the output token of edge ``j->i`` at
  layer ``l`` is an input of edge ``i->j`` at layer ``l+1``;
* per layer, a node feature ``centre token + sum_j fc_ij * edge token`` (normalised)
  is returned; models put a readout head on each layer and sum over layers.

:class:`PETStrideModel` (this module) feeds mass-scaled velocities ``u = v sqrt(m)``
(divided by the buffer ``velocity_scale``) as per-atom input features and has two
heads. Outputs are mass-scaled: ``y_q ~ dq sqrt(m)`` and ``y_p ~ p'/sqrt(m) = v' sqrt(m)``
with the residual parametrisation ``y_q = u stride + dq_scale head_q`` and
``y_p = u + p_scale head_p`` (or ``p_scale head_p`` without
``predict_momentum_difference``). After the heads two constraints are imposed
exactly: the total momentum is conserved and the centre of mass moves by
``stride * V_com``.

:class:`openmm_flashmd.model.energy.PETEnergyModel` uses the same backbone without
per-atom inputs and a scalar head (a machine-learned interatomic potential).
"""


import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from openmm_flashmd.model.neighbors import batched_neighbor_list
from openmm_flashmd.model.protocol import make_metadata_json

#: Boltzmann constant in kJ/mol/K.
KB_KJ_PER_MOL_K = 0.008314462618

#: sqrt(kB * 300 K) in sqrt(Da) nm/ps: the rms of each component of u = v sqrt(m) at 300 K.
DEFAULT_VELOCITY_SCALE = math.sqrt(KB_KJ_PER_MOL_K * 300.0)


@dataclass
class PETHypers:
    """Hyper-parameters of :class:`PETBackbone` and the models built on it (lengths in nm).

    Dictionaries written before a field existed (e.g. ``n_radial``) load with that
    field's default, see :meth:`from_dict`.
    """

    cutoff: float = 0.45
    """Neighbour cutoff radius (nm)."""
    cutoff_width: float = 0.05
    """Width of the smooth switching region of the cutoff function (nm)."""
    d_pet: int = 64
    """Token dimension of the transformer."""
    d_node: int = 128
    """Hidden width of the readout heads."""
    d_feedforward: int = 128
    """Hidden width of the transformer feed-forward blocks."""
    num_heads: int = 4
    """Attention heads (``d_pet`` must be divisible by it)."""
    num_attention_layers: int = 2
    """Transformer layers inside each message-passing layer."""
    num_gnn_layers: int = 2
    """Message-passing layers (>= 1; >= 2 to pass messages between centres)."""
    activation: str = "swiglu"
    """Feed-forward activation: ``"swiglu"``, ``"silu"`` or ``"gelu"``."""
    normalization: str = "rmsnorm"
    """Token normalisation: ``"rmsnorm"`` or ``"layernorm"``."""
    predict_momentum_difference: bool = True
    """Predict ``v' sqrt(m)`` as a correction to ``v sqrt(m)`` (else from scratch)."""
    neighbor_method: str = "auto"
    """Neighbour-list algorithm: ``"auto"``, ``"brute"`` or ``"cell"``."""
    n_radial: int = 8
    """Sine radial basis functions of ``|r_ij|`` in the edge features (:func:`radial_basis`;
    0: none, the architecture before they existed). Default 8: on stiff carbon dimers
    (``benchmarks/stiff_bond_learning.py``, 400 steps, 3 seeds) 8 sines reached a
    validation loss of 0.045-0.058 where no basis stayed at 1.82-1.85 (free flight: ~2);
    16 sines were less reliable (0.08-0.50)."""
    verlet_guess: bool = False
    """Stride models only: take the frozen-force Verlet guess (displacement g, velocities w;
    :mod:`openmm_flashmd.integrator.guess`) as input and predict corrections to it."""
    guess_substeps: int = 4
    """Substeps of the Verlet guess (with ``verlet_guess``)."""
    guess_fast_forces: List[str] = dataclasses.field(default_factory=list)
    """OpenMM Force classes the Verlet guess recomputes at every substep (with ``verlet_guess``;
    e.g. ``["HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce"]``); empty:
    every force frozen at the start of the stride (:mod:`openmm_flashmd.integrator.guess`)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for inconsistent values."""
        if not self.cutoff > 0.0:
            raise ValueError(f"cutoff must be positive (nm), got {self.cutoff}")
        if not 0.0 < self.cutoff_width <= self.cutoff:
            raise ValueError(f"cutoff_width must be in (0, cutoff] (nm), got {self.cutoff_width}")
        if int(self.guess_substeps) < 1:
            raise ValueError(f"guess_substeps must be a positive integer, got {self.guess_substeps}")
        if int(self.n_radial) < 0:
            raise ValueError(f"n_radial must be a non-negative integer, got {self.n_radial}")
        for name in ("d_pet", "d_node", "d_feedforward", "num_heads", "num_attention_layers", "num_gnn_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.d_pet % self.num_heads != 0 or self.d_pet // self.num_heads < 2:
            raise ValueError(
                f"d_pet ({self.d_pet}) must be a multiple of num_heads ({self.num_heads}) with at least 2 channels per head"
            )
        if self.activation not in ("swiglu", "silu", "gelu"):
            raise ValueError(f"activation must be 'swiglu', 'silu' or 'gelu', got {self.activation!r}")
        if self.normalization not in ("rmsnorm", "layernorm"):
            raise ValueError(f"normalization must be 'rmsnorm' or 'layernorm', got {self.normalization!r}")
        if self.neighbor_method not in ("auto", "brute", "cell"):
            raise ValueError(f"neighbor_method must be 'auto', 'brute' or 'cell', got {self.neighbor_method!r}")

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON dictionary of the hyper-parameters."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "PETHypers":
        """Build from a dictionary; unknown keys raise ``ValueError``, missing keys take
        their defaults (so dictionaries from older versions load)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown PET hyper-parameters: {sorted(unknown)} (known: {sorted(known)})")
        return cls(**values)


def cutoff_function(r: Tensor, cutoff: float, width: float) -> Tensor:
    """Smooth cutoff ``fc(r)`` (r in nm): 1 for ``r <= cutoff - width``, 0 for ``r >= cutoff``.

    In between ``0.5 (1 + cos(pi (r - cutoff + width) / width))``: continuous with a
    continuous first derivative; gradients are finite everywhere.
    """
    x = torch.clamp((r - (cutoff - width)) / width, min=0.0, max=1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * x))

def radial_basis(r: Tensor, cutoff: float, n: int) -> Tensor:
    """Sine radial basis ``[E, n]`` of distances ``r`` [E] (nm), ``n >= 0`` functions.

    ``b_k(r) = sin(k pi r / cutoff) / (pi r / cutoff)``, ``k = 1..n``: the radial part of
    the spherical Bessel function ``j_0`` on ``[0, cutoff]`` (as in DimeNet), scaled to be
    bounded (``|b_k| <= k``, ``b_k(0) = k``). The highest frequency resolves changes of
    ``r`` of about ``cutoff / (2 n)``. Multiply by :func:`cutoff_function` for features
    that vanish smoothly at the cutoff.
    """
    k = torch.arange(1, n + 1, dtype=r.dtype, device=r.device)
    x = (math.pi / cutoff) * r.clamp(min=1e-12 * cutoff).unsqueeze(1)
    return torch.sin(k * x) / x


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension with a learned gain."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # one fused kernel; the same numbers as x * rsqrt(mean(x^2) + eps) * weight
        return nn.functional.rms_norm(x, [x.shape[-1]], self.weight, self.eps)


def _make_norm(kind: str, dim: int) -> nn.Module:
    if kind == "rmsnorm":
        return RMSNorm(dim)
    return nn.LayerNorm(dim)


class FeedForward(nn.Module):
    """Transformer feed-forward block (SwiGLU, SiLU or GELU)."""

    def __init__(self, dim: int, hidden: int, activation: str):
        super().__init__()
        self.gated = activation == "swiglu"
        self.use_gelu = activation == "gelu"
        self.w_in = nn.Linear(dim, 2 * hidden if self.gated else hidden)
        self.w_out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.w_in(x)
        if self.gated:
            a, b = h.chunk(2, dim=-1)
            h = nn.functional.silu(a) * b
        elif self.use_gelu:
            h = nn.functional.gelu(h)
        else:
            h = nn.functional.silu(h)
        return self.w_out(h)


class CutoffAttention(nn.Module):
    """Multi-head self-attention within each centre's sequence, weighted by a cutoff.

    For query ``a`` and keys ``b`` of one sequence the probabilities are

    ``p_ab = softmax_b(s_ab) w_b / sum_c softmax_c(s_ac) w_c``

    with ``w`` = 1 for the centre token, ``fc(r_ij)`` for a neighbour token and 0 for
    padding (also masked). No ``log(w)`` appears, so gradients stay finite at
    ``w = 0``, and a token whose ``w`` goes to 0 drops out continuously.

    Tokens come *packed* (``[M, d]``: every real token once) with ``slots`` giving
    each token's place in the padded ``[C, T]`` layout. Each head has ``head_dim - 1``
    value channels; the fused path (``use_sdpa``, default) appends ``w`` as an extra
    value channel, runs :func:`torch.nn.functional.scaled_dot_product_attention` on
    ``[w v, w]`` and divides, which equals the formula above because the softmax
    normalisation cancels in the ratio. ``use_sdpa = False`` evaluates the formula
    explicitly (reference path, same result up to rounding).

    The projection ``qkv`` holds ``2 d + heads (head_dim - 1)`` output rows (the trained
    parameters); it is evaluated with one zero row appended to each head's value block, so
    the product has ``3 d`` columns, a width the CPU matrix multiply handles about twice as
    fast as the odd ``2 d + heads (head_dim - 1)`` (``benchmarks/pet_profile.py``); after the
    multiplication by ``w`` each head's last value channel, zero until then, is set to ``w``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.value_dim = self.head_dim - 1
        self.dim = dim
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.use_sdpa = True
        self.qkv = nn.Linear(dim, 2 * dim + num_heads * self.value_dim)
        self.out = nn.Linear(num_heads * self.value_dim, dim)

    def _aligned_qkv(self) -> Tuple[Tensor, Tensor]:
        """``qkv``'s weight ``[3 d, d]`` and bias ``[3 d]`` with a zero row after each head's
        value rows (see the class docstring)."""
        heads, dim = self.num_heads, self.dim
        weight = self.qkv.weight
        bias = self.qkv.bias
        value_weight = nn.functional.pad(weight[2 * dim :].reshape(heads, self.value_dim, dim), [0, 0, 0, 1])
        value_bias = nn.functional.pad(bias[2 * dim :].reshape(heads, self.value_dim), [0, 1])
        return (torch.cat([weight[: 2 * dim], value_weight.reshape(heads * self.head_dim, dim)]),
                torch.cat([bias[: 2 * dim], value_bias.reshape(heads * self.head_dim)]))

    def _qkv(self, x: Tensor) -> Tensor:
        """Queries, keys and values ``[M, 3 d]`` of tokens ``x`` ``[M, d]``, each head's values
        followed by a zero channel (the aligned projection of :meth:`_aligned_qkv`)."""
        weight, bias = self._aligned_qkv()
        return nn.functional.linear(x, weight, bias)

    def forward(
        self,
        x: Tensor,
        weights: Tensor,
        slots: Tensor,
        masks: List[Tensor],
        sizes: List[int],
        lengths: List[int],
        explicit: bool = False,
    ) -> Tensor:
        """Attention over padded sequences stored group by group.

        ``x`` [M, d] packed tokens; ``weights`` [M]; ``slots`` [M]: each token's index
        in the padded buffer, which holds group ``g`` as ``sizes[g]`` sequences of
        ``lengths[g]`` tokens (groups one after the other); ``masks[g]``
        ``[sizes[g], 1, 1, lengths[g]]`` bool marks real tokens; ``explicit`` forces the
        reference path (needed for double backward: the fused CPU kernel's backward is
        not differentiable). Returns [M, d]."""
        n_real = x.shape[0]
        heads = self.num_heads
        hd = self.head_dim
        qkv = self._qkv(x)
        q = qkv[:, : self.dim].reshape(n_real, heads, hd)
        k = qkv[:, self.dim : 2 * self.dim].reshape(n_real, heads, hd)
        w = weights.view(n_real, 1, 1)
        v = qkv[:, 2 * self.dim :].reshape(n_real, heads, hd) * w
        v[:, :, hd - 1] = weights.view(n_real, 1)  # [w v, w] per head
        total = 0
        for g in range(len(sizes)):
            total += sizes[g] * lengths[g]
        padded = torch.zeros(3, total, heads * hd, dtype=x.dtype, device=x.device)
        padded[0].index_copy_(0, slots, q.reshape(n_real, heads * hd))
        padded[1].index_copy_(0, slots, k.reshape(n_real, heads * hd))
        padded[2].index_copy_(0, slots, v.reshape(n_real, heads * hd))
        outputs: List[Tensor] = []
        start = 0
        for g in range(len(sizes)):
            n_seq = sizes[g]
            n_tok = lengths[g]
            chunk = padded[:, start : start + n_seq * n_tok]
            chunk = chunk.view(3, n_seq, n_tok, heads, hd).transpose(2, 3)  # [3, C, H, T, hd]
            start += n_seq * n_tok
            if self.use_sdpa and not explicit:
                o = nn.functional.scaled_dot_product_attention(
                    chunk[0], chunk[1], chunk[2], attn_mask=masks[g], scale=self.scale
                )
            else:
                scores = torch.matmul(chunk[0], chunk[1].transpose(-1, -2)) * self.scale
                scores = scores.masked_fill(~masks[g], float("-inf"))
                o = torch.matmul(torch.softmax(scores, dim=-1), chunk[2])
            outputs.append(o.transpose(1, 2).reshape(n_seq * n_tok, heads, hd))
        o = torch.cat(outputs, dim=0).index_select(0, slots)
        num = o[:, :, : self.value_dim]
        den = o[:, :, self.value_dim :].clamp(min=1e-30)
        return self.out((num / den).reshape(n_real, heads * self.value_dim))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer with cutoff-smoothed attention (packed tokens)."""

    def __init__(self, hypers: PETHypers):
        super().__init__()
        self.norm_attn = _make_norm(hypers.normalization, hypers.d_pet)
        self.attention = CutoffAttention(hypers.d_pet, hypers.num_heads)
        self.norm_ff = _make_norm(hypers.normalization, hypers.d_pet)
        self.feedforward = FeedForward(hypers.d_pet, hypers.d_feedforward, hypers.activation)

    def forward(
        self,
        x: Tensor,
        weights: Tensor,
        slots: Tensor,
        masks: List[Tensor],
        sizes: List[int],
        lengths: List[int],
        explicit: bool = False,
    ) -> Tensor:
        x = x + self.attention(self.norm_attn(x), weights, slots, masks, sizes, lengths, explicit)
        return x + self.feedforward(self.norm_ff(x))


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class GNNLayer(nn.Module):
    """One message-passing layer: token embedding, per-centre transformer, node features.

    Edge token ``i->j``: ``W2 silu(W_g g_ij + E_nb[s_j] + E_c[s_i] (+ W_m m_ji)) + b``
    with ``g_ij = [r_ij/rc, |r_ij|/rc, fc(r_ij) b(r_ij), a_i, a_j]`` (``b``:
    :func:`radial_basis`, ``a``: the ``n_atom_features`` per-atom input features) and
    ``m_ji`` the previous layer's output token of the reverse edge ``j->i``. Centre
    token: an MLP of ``[a_i, E[s_i]]`` (and the previous centre output).
    """

    def __init__(self, hypers: PETHypers, n_species: int, n_atom_features: int, first: bool):
        super().__init__()
        d = hypers.d_pet
        self.edge_geometry = nn.Linear(4 + int(hypers.n_radial) + 2 * n_atom_features, d)
        self.species_neighbor = nn.Embedding(n_species, d)
        self.species_centre = nn.Embedding(n_species, d)
        # reverse-edge messages from the previous layer (none in the first layer)
        self.edge_message = nn.Identity() if first else nn.Linear(d, d, bias=False)
        self.edge_out = nn.Linear(d, d)
        self.species_node = nn.Embedding(n_species, d)
        self.centre_embed = _mlp(n_atom_features + d + (0 if first else d), d, d)
        self.transformer = nn.ModuleList([TransformerLayer(hypers) for _ in range(hypers.num_attention_layers)])
        self.norm_node = _make_norm(hypers.normalization, d)

    def forward(
        self,
        edge_geometry: Tensor,
        species: Tensor,
        atom_features: Tensor,
        centre: Tensor,
        neighbor: Tensor,
        fc: Tensor,
        weights: Tensor,
        slots: Tensor,
        masks: List[Tensor],
        sizes: List[int],
        lengths: List[int],
        previous_edges: Optional[Tensor],
        previous_centres: Optional[Tensor],
        explicit_attention: bool = False,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns (edge output tokens [E, d], centre output tokens [M, d], node features [M, d])."""
        n_atoms = species.shape[0]
        h = (
            self.edge_geometry(edge_geometry)
            + self.species_neighbor(species).index_select(0, neighbor)
            + self.species_centre(species).index_select(0, centre)
        )
        if previous_edges is not None:
            h = h + self.edge_message(previous_edges)
        edge_tok = self.edge_out(nn.functional.silu(h))
        centre_in = [atom_features, self.species_node(species)]
        if previous_centres is not None:
            centre_in.append(previous_centres)
        centre_tok = self.centre_embed(torch.cat(centre_in, dim=1))

        x = torch.cat([centre_tok, edge_tok], dim=0)  # packed: centres first, then edges
        for layer in self.transformer:
            x = layer(x, weights, slots, masks, sizes, lengths, explicit_attention)
        centre_out = x[:n_atoms]
        edge_out = x[n_atoms:]
        node = centre_out.index_add(0, centre, edge_out * fc.unsqueeze(1))
        return edge_out, centre_out, self.norm_node(node)

#: Atoms per padding group of the attention (:func:`_sequence_layout`). Smaller groups pad less
#: (each is padded to its own longest sequence) at the cost of one attention call per group.
ATTENTION_GROUP_ATOMS = 128


def _sequence_layout(
    centre: Tensor, n_atoms: int, group_atoms: int = ATTENTION_GROUP_ATOMS, max_groups: int = 8
) -> Tuple[Tensor, List[Tensor], List[int], List[int]]:
    """Where each token goes in the padded attention buffer.

    Tokens are packed as ``[n_atoms centre tokens, edges sorted by centre]``. To limit
    padding, atoms are sorted by neighbour count and split into up to ``max_groups``
    groups of at least about ``group_atoms`` atoms; group ``g`` is padded to ``lengths[g] = 1 +`` its largest
    neighbour count. Returns (slots [M], masks, sizes, lengths) as used by
    :class:`CutoffAttention`. The grouping changes only the memory layout, not the result.
    """
    device = centre.device
    n_edges = centre.shape[0]
    counts = torch.bincount(centre, minlength=n_atoms)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(n_edges, device=device) - starts.index_select(0, centre)
    n_groups = max(1, min(max_groups, n_atoms // max(1, group_atoms)))
    order = torch.argsort(counts, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_atoms, device=device)
    sizes: List[int] = []
    lengths: List[int] = []
    group_of_rank = torch.zeros(n_atoms, dtype=torch.long, device=device)
    bounds: List[int] = torch.linspace(0, n_atoms, n_groups + 1).round().to(torch.long).tolist()
    base_list: List[int] = []
    first_list: List[int] = []
    base = 0
    for g in range(n_groups):
        lo = int(bounds[g])
        hi = int(bounds[g + 1])
        if hi <= lo:
            continue
        length = 1 + int(counts.index_select(0, order[hi - 1 : hi]).item())  # sorted: last is largest
        group_of_rank[lo:hi] = len(sizes)
        sizes.append(hi - lo)
        lengths.append(length)
        base_list.append(base)
        first_list.append(lo)
        base += (hi - lo) * length
    base_t = torch.tensor(base_list, dtype=torch.long, device=device)
    first_t = torch.tensor(first_list, dtype=torch.long, device=device)
    length_t = torch.tensor(lengths, dtype=torch.long, device=device)
    group = group_of_rank.index_select(0, rank)  # per atom
    atom_slot = base_t.index_select(0, group) + (rank - first_t.index_select(0, group)) * length_t.index_select(0, group)
    slots = torch.cat([atom_slot, atom_slot.index_select(0, centre) + 1 + slot])
    valid = torch.zeros(base, dtype=torch.bool, device=device)
    valid[slots] = True
    masks: List[Tensor] = []
    start = 0
    for g in range(len(sizes)):
        masks.append(valid[start : start + sizes[g] * lengths[g]].view(sizes[g], 1, 1, lengths[g]))
        start += sizes[g] * lengths[g]
    return slots, masks, sizes, lengths


class PETBackbone(nn.Module):
    """The PET message-passing network shared by the stride and energy models.

    Args:
        hypers: architecture hyper-parameters (:class:`PETHypers`).
        elements: supported atomic numbers (sorted and deduplicated here).
        periodic: True (a box is required), False (no box allowed), None (both).
        n_atom_features: width of the optional per-atom input features (e.g. 3 for
            the stride model's scaled velocities; 0 for none).

    :meth:`forward` returns per-atom features ``[B*N, d_pet]``, one tensor per
    message-passing layer. :meth:`species` maps atomic numbers to species indices
    with a clear error for unsupported elements; :meth:`check_box` enforces the
    periodicity. Both are meant for the models that own the backbone.
    """

    __jit_ignored_attributes__ = ["elements"]

    def __init__(
        self, hypers: PETHypers, elements: List[int], periodic: Optional[bool] = None, n_atom_features: int = 0
    ):
        super().__init__()
        hypers.validate()
        elements = sorted({int(z) for z in elements})
        if not elements or min(elements) < 1:
            raise ValueError(f"elements must be a non-empty list of atomic numbers >= 1, got {elements}")
        if n_atom_features < 0:
            raise ValueError(f"n_atom_features must be >= 0, got {n_atom_features}")
        self.elements = elements
        self.elements_str = ", ".join(str(z) for z in elements)
        self.cutoff = float(hypers.cutoff)
        self.cutoff_width = float(hypers.cutoff_width)
        self.n_radial = int(hypers.n_radial)
        self.neighbor_method = hypers.neighbor_method
        self.n_atom_features = int(n_atom_features)
        self.periodic_mode = -1 if periodic is None else int(bool(periodic))
        table = torch.full((max(elements) + 1,), -1, dtype=torch.long)
        for k, z in enumerate(elements):
            table[z] = k
        self.register_buffer("species_index", table)
        self.gnn_layers = nn.ModuleList(
            [
                GNNLayer(hypers, len(elements), self.n_atom_features, first=(k == 0))
                for k in range(hypers.num_gnn_layers)
            ]
        )

    def species(self, atomic_numbers: Tensor) -> Tensor:
        """Species indices ``[N]`` (0..len(elements)-1) of ``atomic_numbers`` ``[N]``;
        ``ValueError`` naming the unsupported atomic numbers."""
        z = atomic_numbers.to(torch.long)
        n_table = self.species_index.shape[0]
        if z.numel() > 0:
            bad = (z < 0) | (z >= n_table)
            in_range = torch.where(bad, torch.zeros_like(z), z)
            species = self.species_index.index_select(0, in_range)
            bad = bad | (species < 0)
            if bool(bad.any()):
                unknown: List[int] = torch.unique(z[bad]).tolist()
                raise ValueError(
                    "PET model got atomic numbers "
                    + str(unknown)
                    + " it was not trained for (supported elements: "
                    + self.elements_str
                    + ")"
                )
            return species
        return torch.zeros_like(z)

    def check_box(self, box: Tensor) -> None:
        """Raise ``ValueError`` when ``box`` ``[3, 3]`` or ``[B, 3, 3]`` (nm) does not match
        the periodicity the backbone was built for."""
        cells = box.reshape(-1, 9)
        for b in range(cells.shape[0]):
            periodic = bool((cells[b] != 0).any())
            if self.periodic_mode == 1 and not periodic:
                raise ValueError("this PET model was trained on periodic systems; pass a non-zero box (nm)")
            if self.periodic_mode == 0 and periodic:
                raise ValueError("this PET model was trained on non-periodic systems; pass an all-zero box")

    def forward(
        self,
        positions: Tensor,
        species: Tensor,
        box: Tensor,
        atom_features: Tensor,
        group_atoms: int = ATTENTION_GROUP_ATOMS,
        twice_differentiable: bool = False,
    ) -> List[Tensor]:
        """Per-atom features of a batch of structures of the same atoms.

        Args:
            positions: ``[B, N, 3]`` nm, in the backbone's dtype.
            species: ``[N]`` species indices (from :meth:`species`).
            box: ``[B, 3, 3]`` nm, cell vectors as rows (zeros: not periodic).
            atom_features: ``[B, N, n_atom_features]`` per-atom inputs (dimensionless,
                order 1), ``[B, N, 0]`` when there are none.
            group_atoms: atoms per padding group of the attention (memory layout only,
                see :func:`_sequence_layout`).
            twice_differentiable: use the explicit attention path, whose backward can
                itself be differentiated (training on forces); same result up to rounding.

        Returns:
            one ``[B*N, d_pet]`` tensor per message-passing layer (structure-major).
        """
        dtype = positions.dtype
        n_struct = positions.shape[0]
        n_atoms = positions.shape[1]
        n_total = n_struct * n_atoms
        if atom_features.shape[0] != n_struct or atom_features.shape[1] != n_atoms:
            raise ValueError("atom_features must have shape [B, N, n_atom_features]")
        if atom_features.shape[2] != self.n_atom_features:
            raise ValueError(
                "atom_features has " + str(atom_features.shape[2]) + " channels; the backbone expects "
                + str(self.n_atom_features)
            )
        features = atom_features.to(dtype).reshape(n_total, self.n_atom_features)
        species_all = species.repeat(n_struct)

        edge_index, vectors = batched_neighbor_list(positions, box, self.cutoff, self.neighbor_method)
        centre = edge_index[0]
        neighbor = edge_index[1]
        r = torch.linalg.norm(vectors, dim=1)
        fc = cutoff_function(r, self.cutoff, self.cutoff_width)
        geometry = torch.cat(
            [
                vectors / self.cutoff,
                (r / self.cutoff).unsqueeze(1),
                radial_basis(r, self.cutoff, self.n_radial) * fc.unsqueeze(1),
                features.index_select(0, centre),
                features.index_select(0, neighbor),
            ],
            dim=1,
        )
        slots, masks, sizes, lengths = _sequence_layout(centre, n_total, group_atoms)
        weights = torch.cat([torch.ones(n_total, dtype=dtype, device=positions.device), fc])
        key = centre * n_total + neighbor
        reverse = torch.searchsorted(key, neighbor * n_total + centre)

        nodes: List[Tensor] = []
        edges: Optional[Tensor] = None
        centres: Optional[Tensor] = None
        for layer in self.gnn_layers:
            previous_edges: Optional[Tensor] = None
            if edges is not None:
                previous_edges = edges.index_select(0, reverse)
            edges, centres, node = layer(
                geometry, species_all, features, centre, neighbor, fc, weights, slots, masks, sizes, lengths,
                previous_edges, centres, twice_differentiable,
            )
            nodes.append(node)
        return nodes


def _upgrade_stride_state_dict(state_dict: Dict[str, Tensor], prefix: str, *args: Any) -> None:
    """Load-state-dict pre-hook: rename the keys of stride models saved before the
    backbone was shared (``gnn_layers.K.head_q.*`` -> ``heads_q.K.*``, ``gnn_layers.*``
    -> ``backbone.gnn_layers.*``, ``species_index`` -> ``backbone.species_index``).
    Such models had no radial basis: rebuild them with ``n_radial=0``."""
    old_layer = prefix + "gnn_layers."
    for key in [k for k in state_dict if k.startswith(old_layer) or k == prefix + "species_index"]:
        value = state_dict.pop(key)
        if key == prefix + "species_index":
            state_dict[prefix + "backbone.species_index"] = value
            continue
        layer, _, rest = key[len(old_layer):].partition(".")
        if rest.startswith("head_q.") or rest.startswith("head_p."):
            state_dict[prefix + "heads_" + rest[5] + "." + layer + "." + rest[7:]] = value
        else:
            state_dict[prefix + "backbone.gnn_layers." + layer + "." + rest] = value
    for name in ("guess_scale", "guess_velocity_scale"):  # models from before the Verlet guess
        if prefix + "velocity_scale" in state_dict and prefix + name not in state_dict:
            state_dict[prefix + name] = torch.ones_like(state_dict[prefix + "velocity_scale"])


class PETModel(nn.Module):
    """What the stride and energy models share around their :class:`PETBackbone`: the
    metadata string. Subclasses set ``backbone``, ``hypers``, ``elements``, ``cutoff``
    (nm), ``provenance`` and ``validation``, and name their own metadata fields in
    :meth:`_own_metadata` (``kind`` at least)."""

    metadata_json: str

    @torch.jit.ignore
    def _own_metadata(self) -> Dict[str, Any]:
        raise NotImplementedError

    @torch.jit.ignore
    def update_metadata(
        self, provenance: Optional[Dict[str, Any]] = None, validation: Optional[Dict[str, Any]] = None
    ) -> None:
        """Rewrite ``metadata_json`` with new training provenance and/or validation errors.

        Call before :func:`torch.jit.script` / ``save_model``: a scripted copy keeps the
        string it was scripted with.
        """
        if provenance is not None:
            self.provenance = dict(provenance)
        if validation is not None:
            self.validation = dict(validation)
        mode = self.backbone.periodic_mode
        self.metadata_json = make_metadata_json(
            elements=self.elements,
            cutoff=self.cutoff,
            periodic=None if mode < 0 else bool(mode),
            hypers=self.hypers.to_dict(),
            provenance=self.provenance,
            validation=self.validation,
            **self._own_metadata(),
        )


class PETStrideModel(PETModel):
    """PET stride model following :mod:`openmm_flashmd.model.protocol`.

    Args:
        hypers: architecture hyper-parameters (:class:`PETHypers`).
        stride: time advanced by one call, in ps.
        elements: supported atomic numbers.
        masses: mass in Da for each supported element (recorded in the metadata).
        periodic: True (the model requires a box), False (requires no box), None (both).
        provenance: free-form training provenance written into the metadata.

    Buffers (set by the trainer from data, in the model's dtype):
        ``velocity_scale`` (sqrt(Da) nm/ps): typical component of ``u = v sqrt(m)``;
        ``dq_scale`` (sqrt(Da) nm): scale of the learned part of ``dq sqrt(m)``;
        ``p_scale`` (sqrt(Da) nm/ps): scale of the learned part of ``v' sqrt(m)``;
        with ``hypers.verlet_guess``, ``guess_scale`` (sqrt(Da) nm) and
        ``guess_velocity_scale`` (sqrt(Da) nm/ps): typical ``(g - v stride) sqrt(m)`` and
        ``(w - v) sqrt(m)`` of the guess inputs.
        Defaults correspond to 300 K: ``velocity_scale = p_scale = sqrt(kB 300 K)``
        and ``dq_scale = velocity_scale * stride``.

    With ``hypers.verlet_guess`` the model takes the Verlet guess and its outputs are
    ``y_q = g sqrt(m) + dq_scale head_q`` and ``y_p = w sqrt(m) + p_scale head_p``; build it
    with :meth:`build` (a :class:`PETGuessStrideModel`, whose ``forward`` takes the guess).
    """

    __jit_ignored_attributes__ = ["hypers", "elements", "element_masses", "provenance", "validation"]

    stride: float
    metadata_json: str

    def __init__(
        self,
        hypers: PETHypers,
        stride: float,
        elements: List[int],
        masses: Dict[int, float],
        periodic: Optional[bool] = None,
        provenance: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        if not stride > 0.0:
            raise ValueError(f"stride must be positive (ps), got {stride}")
        hypers.validate()
        elements = sorted({int(z) for z in elements})
        if not elements or min(elements) < 1:
            raise ValueError(f"elements must be a non-empty list of atomic numbers >= 1, got {elements}")
        masses = {int(z): float(m) for z, m in masses.items()}
        missing = [z for z in elements if z not in masses]
        if missing:
            raise ValueError(f"no mass (Da) given for elements {missing}")
        self.hypers = hypers
        self.elements = elements
        self.element_masses = {z: masses[z] for z in elements}
        self.provenance = dict(provenance or {})
        self.validation = {}  # type: Dict[str, Any]
        self.stride = float(stride)
        self.cutoff = float(hypers.cutoff)
        self.predict_momentum_difference = bool(hypers.predict_momentum_difference)
        # atoms per padding group of the attention (performance only, see _sequence_layout)
        self.attention_group_atoms = ATTENTION_GROUP_ATOMS

        self.register_buffer("velocity_scale", torch.tensor(DEFAULT_VELOCITY_SCALE))
        self.register_buffer("dq_scale", torch.tensor(DEFAULT_VELOCITY_SCALE * float(stride)))
        self.register_buffer("p_scale", torch.tensor(DEFAULT_VELOCITY_SCALE))
        self.uses_guess = bool(hypers.verlet_guess)
        self.register_buffer("guess_scale", torch.tensor(DEFAULT_VELOCITY_SCALE * float(stride)))
        self.register_buffer("guess_velocity_scale", torch.tensor(DEFAULT_VELOCITY_SCALE))

        # per-atom inputs: u / velocity_scale (3 channels), and with the guess
        # (g - v stride) sqrt(m) / guess_scale and (w - v) sqrt(m) / guess_velocity_scale
        self.backbone = PETBackbone(hypers, elements, periodic, n_atom_features=9 if self.uses_guess else 3)
        self.heads_q = nn.ModuleList([_mlp(hypers.d_pet, hypers.d_node, 3) for _ in range(hypers.num_gnn_layers)])
        self.heads_p = nn.ModuleList([_mlp(hypers.d_pet, hypers.d_node, 3) for _ in range(hypers.num_gnn_layers)])
        self.metadata_json = ""
        self.update_metadata()
        self._register_load_state_dict_pre_hook(_upgrade_stride_state_dict)

    @torch.jit.ignore
    def _own_metadata(self) -> Dict[str, Any]:
        fields: Dict[str, Any] = {"kind": "pet", "masses": self.element_masses}
        if self.hypers.verlet_guess:
            fields.update(inputs=["verlet_guess"], guess_substeps=int(self.hypers.guess_substeps),
                          guess_fast_forces=[str(name) for name in self.hypers.guess_fast_forces])
        return fields

    @staticmethod
    def build(
        hypers: PETHypers,
        stride: float,
        elements: List[int],
        masses: Dict[int, float],
        periodic: Optional[bool] = None,
        provenance: Optional[Dict[str, Any]] = None,
    ) -> "PETStrideModel":
        """A :class:`PETGuessStrideModel` when ``hypers.verlet_guess``, else a
        :class:`PETStrideModel` (arguments as for the constructor)."""
        cls = PETGuessStrideModel if hypers.verlet_guess else PETStrideModel
        return cls(hypers, stride, elements, masses, periodic, provenance)

    @classmethod
    def from_metadata(cls, metadata: Dict[str, Any]) -> "PETStrideModel":
        """A freshly initialised model with the architecture recorded in ``metadata``.

        ``metadata`` is what :func:`openmm_flashmd.model.protocol.read_metadata` returns
        (it includes ``stride`` in ps); load trained weights with ``load_state_dict``.
        """
        if metadata.get("kind") != "pet":
            raise ValueError(f"metadata describes a {metadata.get('kind')!r} model, not 'pet'")
        masses = {int(z): float(m) for z, m in metadata["masses"].items()}
        model = PETStrideModel.build(
            PETHypers.from_dict(metadata["hypers"]),
            float(metadata["stride"]),
            [int(z) for z in metadata["elements"]],
            masses,
            periodic=metadata.get("periodic"),
            provenance=metadata.get("provenance") or {},
        )
        if metadata.get("validation"):
            model.update_metadata(validation=metadata["validation"])
        return model

    @torch.jit.ignore
    def set_scales(self, velocity_scale: float, dq_scale: float, p_scale: float,
                   guess_scale: Optional[float] = None, guess_velocity_scale: Optional[float] = None) -> None:
        """Set the normalisation buffers (sqrt(Da) nm/ps, sqrt(Da) nm, sqrt(Da) nm/ps; the guess
        scales in sqrt(Da) nm and sqrt(Da) nm/ps, left as they are when None)."""
        for name, value in (("velocity_scale", velocity_scale), ("dq_scale", dq_scale), ("p_scale", p_scale),
                            ("guess_scale", guess_scale), ("guess_velocity_scale", guess_velocity_scale)):
            if value is None:
                continue
            if not float(value) > 0.0:
                raise ValueError(f"{name} must be positive, got {value}")
            getattr(self, name).fill_(float(value))

    def _predict(
        self, positions: Tensor, velocities: Tensor, masses: Tensor, atomic_numbers: Tensor, box: Tensor,
        guess: Optional[Tensor] = None, guess_velocities: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Batched core in the model dtype: returns (dq [B,N,3] nm, v' [B,N,3] nm/ps).
        ``guess`` [B,N,3] nm and ``guess_velocities`` [B,N,3] nm/ps: the Verlet guess, required
        exactly when the model was built with ``verlet_guess``."""
        dtype = self.velocity_scale.dtype
        if positions.dim() != 3 or positions.shape[2] != 3:
            raise ValueError("positions must have shape [B, N, 3] (nm)")
        if velocities.shape != positions.shape:
            raise ValueError("velocities must have the shape of positions (nm/ps)")
        n_struct = positions.shape[0]
        n_atoms = positions.shape[1]
        if masses.shape[0] != n_atoms or atomic_numbers.shape[0] != n_atoms:
            raise ValueError("masses (Da) and atomic_numbers must have one entry per particle")
        pos = positions.to(dtype)
        vel = velocities.to(dtype)
        m = masses.to(dtype)
        cell = box.to(dtype)
        if bool((m <= 0).any()):
            raise ValueError("PET model needs positive masses (Da) for every particle")
        self.backbone.check_box(cell)
        species = self.backbone.species(atomic_numbers)
        sqrt_m = torch.sqrt(m).view(1, n_atoms, 1)
        u = vel * sqrt_m  # [B, N, 3], sqrt(Da) nm/ps
        features = u / self.velocity_scale
        base_q = u * self.stride
        base_p = u
        if self.uses_guess:
            if guess is None or guess_velocities is None:
                raise ValueError("this PET stride model takes the Verlet guess (guess, guess_velocities)")
            if guess.shape != positions.shape or guess_velocities.shape != positions.shape:
                raise ValueError("the Verlet guess must have the shape of positions (nm, nm/ps)")
            base_q = guess.to(dtype) * sqrt_m
            base_p = guess_velocities.to(dtype) * sqrt_m
            features = torch.cat(
                [features, (base_q - u * self.stride) / self.guess_scale, (base_p - u) / self.guess_velocity_scale],
                dim=2,
            )

        nodes = self.backbone(pos, species, cell, features, self.attention_group_atoms)
        n_total = n_struct * n_atoms
        head_q = torch.zeros(n_total, 3, dtype=dtype, device=pos.device)
        head_p = torch.zeros(n_total, 3, dtype=dtype, device=pos.device)
        for k, head in enumerate(self.heads_q):
            head_q = head_q + head(nodes[k])
        for k, head in enumerate(self.heads_p):
            head_p = head_p + head(nodes[k])
        head_q = head_q.view(n_struct, n_atoms, 3)
        head_p = head_p.view(n_struct, n_atoms, 3)

        y_q = base_q + self.dq_scale * head_q
        if self.predict_momentum_difference or self.uses_guess:
            y_p = base_p + self.p_scale * head_p
        else:
            y_p = self.p_scale * head_p
        dq = y_q / sqrt_m
        new_v = y_p / sqrt_m
        return self._constrain(dq, new_v, vel, m)

    def _constrain(self, dq: Tensor, new_v: Tensor, vel: Tensor, m: Tensor) -> Tuple[Tensor, Tensor]:
        """Impose momentum conservation and uniform centre-of-mass motion exactly."""
        w = (m / m.sum()).view(1, -1, 1)
        dv = new_v - vel
        dv = dv - (w * dv).sum(dim=1, keepdim=True)
        new_v = vel + dv
        v_com = (w * vel).sum(dim=1, keepdim=True)
        dq = dq - ((w * dq).sum(dim=1, keepdim=True) - self.stride * v_com)
        return dq, new_v

    @torch.jit.export
    def forward_batch(
        self, positions: Tensor, velocities: Tensor, masses: Tensor, atomic_numbers: Tensor, box: Tensor,
        guess: Optional[Tensor] = None, guess_velocities: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Batched step: positions/velocities ``[B, N, 3]`` (nm, nm/ps), masses ``[N]`` (Da),
        atomic_numbers ``[N]``, box ``[B, 3, 3]`` (nm, rows), for models with the Verlet guess
        its displacement and velocities ``[B, N, 3]`` (nm, nm/ps) -> new positions and
        velocities ``[B, N, 3]`` (nm, nm/ps) in the model's dtype."""
        dq, new_v = self._predict(positions, velocities, masses, atomic_numbers, box, guess, guess_velocities)
        return positions.to(dq.dtype) + dq, new_v

    @torch.jit.export
    def forward_scaled_batch(
        self, positions: Tensor, velocities: Tensor, masses: Tensor, atomic_numbers: Tensor, box: Tensor,
        guess: Optional[Tensor] = None, guess_velocities: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Mass-scaled predictions after the constraints, in the model's dtype.

        Same inputs as :meth:`forward_batch`; returns ``y_q = dq sqrt(m)`` (sqrt(Da) nm)
        and ``y_p = v' sqrt(m)`` (sqrt(Da) nm/ps), each ``[B, N, 3]``.
        """
        dq, new_v = self._predict(positions, velocities, masses, atomic_numbers, box, guess, guess_velocities)
        sqrt_m = torch.sqrt(masses.to(dq.dtype)).view(1, -1, 1)
        return dq * sqrt_m, new_v * sqrt_m

    def forward(
        self, positions: Tensor, velocities: Tensor, masses: Tensor, atomic_numbers: Tensor, box: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """One stride: positions [N,3] nm, velocities [N,3] nm/ps, masses [N] Da,
        atomic_numbers [N], box [3,3] nm (rows; zeros = non-periodic) -> positions and
        velocities at ``t + stride`` (nm, nm/ps) in the dtype of ``positions``."""
        return self._single(positions, velocities, masses, atomic_numbers, box, None, None)

    def _single(
        self, positions: Tensor, velocities: Tensor, masses: Tensor, atomic_numbers: Tensor, box: Tensor,
        guess: Optional[Tensor], guess_velocities: Optional[Tensor],
    ) -> Tuple[Tensor, Tensor]:
        """:meth:`forward` of one structure, with or without the Verlet guess ``[N, 3]``."""
        if positions.dim() != 2 or positions.shape[1] != 3:
            raise ValueError("positions must have shape [N, 3] (nm)")
        if guess is not None:
            guess = guess.unsqueeze(0)
        if guess_velocities is not None:
            guess_velocities = guess_velocities.unsqueeze(0)
        dq, new_v = self._predict(
            positions.unsqueeze(0), velocities.unsqueeze(0), masses, atomic_numbers, box.unsqueeze(0),
            guess, guess_velocities,
        )
        out_dtype = positions.dtype
        return positions + dq[0].to(out_dtype), new_v[0].to(out_dtype)


class PETGuessStrideModel(PETStrideModel):
    """:class:`PETStrideModel` with the Verlet guess input (``hypers.verlet_guess``): its
    ``forward`` takes the guess displacement and velocities after ``box``, as the
    stride-model protocol defines for models declaring the ``verlet_guess`` input."""

    def forward(
        self, positions: Tensor, velocities: Tensor, masses: Tensor, atomic_numbers: Tensor, box: Tensor,
        guess_displacement: Tensor, guess_velocities: Tensor,
    ) -> Tuple[Tensor, Tensor]:
        """One stride: as :meth:`PETStrideModel.forward`, with the Verlet guess
        ``guess_displacement`` [N,3] nm and ``guess_velocities`` [N,3] nm/ps."""
        return self._single(positions, velocities, masses, atomic_numbers, box, guess_displacement, guess_velocities)
