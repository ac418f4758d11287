"""A τ-controlled synthesis transform by network interpolation.

The perceptual endpoint gets its own synthesis g_s with weights θ₁ (a copy of the codec's g_s
fine-tuned on ŷ with a GAN; see `dpexplorer.training.synthesis`), and τ blends the *weights*:

    θ_τ = (1 − τ)·θ₀ + τ·θ₁

as in "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks" (Wang et al., ECCV Workshops
2018, arXiv:1809.00219: network interpolation between a PSNR-oriented and a GAN-fine-tuned generator). The encoder and the entropy model are
untouched, so the bitstream is the codec's; only the receiver's g_s moves along τ ("High-Fidelity
Generative Image Compression", Mentzer et al., NeurIPS 2020, arXiv:2006.09965, trains such a GAN decoder
from scratch; here it starts from θ₀).

τ = 0 runs g_s0 itself (no blend), so it is bit-identical to the plain decoder.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call

from dpexplorer.cache import LRU
from dpexplorer.codec.codec import Codec
from dpexplorer.decoders.base import DecodeOptions, TauDecoder
from dpexplorer.decoders.stream import Stream
from dpexplorer.decoders.tau import check_tau
from dpexplorer.errors import WeightsError
from dpexplorer.hub.manifest import find_entry, weights_dir


class InterpolatedSynthesis:
    """`g(y, tau)`: g_s0 with parameters θ_τ; buffers (e.g. GDN's reparametrisation pedestals) from θ₀."""

    def __init__(self, g_s0: torch.nn.Module, theta1_state: dict[str, torch.Tensor]):
        self.g_s0 = g_s0
        self.theta0 = {k: p.detach() for k, p in g_s0.named_parameters()}
        missing = self.theta0.keys() - theta1_state.keys()
        if missing:
            raise ValueError(f"theta1 lacks parameters {sorted(missing)[:3]}…")
        self.theta1 = {k: theta1_state[k].detach().to(p) for k, p in self.theta0.items()}
        self.buffers = {k: b for k, b in g_s0.named_buffers()}

    def params(self, tau: float) -> dict[str, torch.Tensor]:
        tau = check_tau(tau)
        # torch.lerp is exact at the ends: τ = 1 gives θ₁ bit for bit.
        return {k: torch.lerp(p, self.theta1[k], tau) for k, p in self.theta0.items()}

    def at(self, tau: float):
        """The synthesis transform y ↦ g_s(y; θ_τ), weights blended once (tiles then reuse them)."""
        if check_tau(tau) == 0.0:
            return self.g_s0
        weights = {**self.params(tau), **self.buffers}
        return lambda y: functional_call(self.g_s0, weights, (y,))

    def endpoint(self) -> torch.nn.Module:
        """A frozen copy of g_s0 holding θ₁ (what a training runs through, e.g. the latent residual's)."""
        g_s1 = copy.deepcopy(self.g_s0)
        g_s1.load_state_dict({**self.theta1, **self.buffers})
        return g_s1.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, y: torch.Tensor, tau: float) -> torch.Tensor:
        return self.at(tau)(y)


class SynthesisDecoder(TauDecoder):
    """The perceptual synthesis as a τ decoder: x̂_τ = g_s(ŷ; θ_τ)."""

    key = "synthesis"
    label = "Perceptual synthesis (GAN, network interpolation)"
    description = ("A copy of the codec's synthesis transform fine-tuned on ŷ with LPIPS and a GAN loss; τ blends "
                   "the weights, θ_τ = (1 − τ)·θ₀ + τ·θ₁. Deterministic: sampler, steps and seed do not apply.")
    name = "perceptual synthesis"
    marker = "s"
    colour = "#2ca02c"

    def __init__(self, codec: Codec, synthesis: InterpolatedSynthesis, *, cache_bytes: int = 64 << 20):
        super().__init__(codec)
        self.synthesis = synthesis
        # θ₁'s image per stream: a τ map (the brush, the sender's hint) blends it with x̂₀, so a τ change
        # along a hinted file costs one array blend, no g_s pass
        self._full = LRU(cache_bytes, weight=lambda a: a.nbytes)
        self._lock = threading.Lock()

    @classmethod
    def from_entry(cls, entry: dict, state: dict, codec: Codec, *, directory: Path) -> "SynthesisDecoder":
        return cls(codec, InterpolatedSynthesis(codec.model.g_s, state))

    def at(self, tau: float):
        """g_s(·; θ_τ), weights blended once."""
        return self.synthesis.at(tau)

    def _decode(self, stream: Stream, tau: float, options: DecodeOptions) -> np.ndarray:
        if tau != 1.0:
            return stream.synthesize(g_s=self.synthesis.at(tau))
        return self.full(stream)

    def full(self, stream: Stream) -> np.ndarray:
        """θ₁'s image x̂₁ of a stream (cached: the τ maps, the grain guard and τ = 1 share it)."""
        with self._lock:
            cached = self._full.get(stream.content_sha256)
        if cached is None:
            cached = stream.synthesize(g_s=self.synthesis.at(1.0))
            with self._lock:
                self._full.get_or(stream.content_sha256, lambda: cached)
        return cached


def trained_synthesis(record: dict, directory: Path | None = None) -> InterpolatedSynthesis | None:
    """The shipped perceptual synthesis a module (a manifest entry, or a checkpoint's `kind`, `arch`,
    `quality`) was trained through, checked against its `synthesis_sha256`; None without one."""
    if not record.get("synthesis_sha256"):
        return None
    directory = Path(directory or weights_dir())
    _, entry = find_entry("synthesis", record["arch"], record["quality"], directory)
    if entry["sha256"] != record["synthesis_sha256"]:
        raise WeightsError(f"the {record['kind']} module of q{record['quality']} was trained on other synthesis weights")
    return SynthesisDecoder.load(record["quality"], record["arch"]).synthesis
