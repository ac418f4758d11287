"""The base codec: a CompressAI mean-scale hyperprior model behind a bytes-in/bytes-out interface.

    codec = get_codec(quality=3)                   # shipped weights, verified by hash (dpexplorer.hub.loading)
    data = codec.encode(image)                     # .dpx bytes (real entropy coding)
    x_hat, y_hat = codec.decode(data)              # 8-bit image, quantized latent

Images of any size are padded (replicate) to a multiple of 64 and cropped back after decoding.
Above `Tiling.above_pixels` the transforms g_a and g_s run tile by tile (dpexplorer/codec/tiling.py), so
memory stays bounded up to the 48-MP input limit. No file I/O here: `dpexplorer.hub.loading` builds a
`Codec` from the shipped weights (`load_codec`) or CompressAI's published ones (`pretrained_codec`).
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save as safetensors_bytes

from dpexplorer.codec.effort import MAX_EFFORT_PIXELS, EffortSchedule, refine_latents
from dpexplorer.codec.config import DEFAULT_ARCH, PAD_MULTIPLE, CodecConfig, build_model, codec_config
from dpexplorer.codec.hyperprior import hyper_analysis, scales_and_means
from dpexplorer.codec.ransguard import guard
from dpexplorer.codec.tiling import CELL, Tiling, analysis, synthesis
from dpexplorer.errors import BitstreamError, ImageError
from dpexplorer.io.bitstream import Bitstream
from dpexplorer.io.images import ImageSource, load_image, to_tensor, to_uint8


def pad_to_multiple(x: torch.Tensor, multiple: int = PAD_MULTIPLE) -> torch.Tensor:
    """Replicate-pad N×C×H×W on the right and bottom up to a multiple (edges repeat: no false edges)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's canonical safetensors serialisation (for models not loaded from a file)."""
    return hashlib.sha256(safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()})).hexdigest()


def latent_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the tensors that define ŷ and the bitstream: all but the synthesis transform g_s's.
    A `.dpx` file and a module that decodes ŷ (the τ decoders) stay valid when only g_s changes (the
    plain decoder refit to the rounded ŷ, docs/synthesis.md)."""
    return state_fingerprint({k: v for k, v in state.items() if not k.startswith("g_s.")})


_INVARIANT_LOCK = threading.RLock()


@contextmanager
def thread_invariant():
    """Compute so that the result does not depend on the number of threads.

    oneDNN (mkldnn) splits a 1×1 convolution's reduction (GDN's) by thread count: Kodak kodim01 at
    q3 decoded with 1 and with 2 threads differed by ±1 in 12 pixels. PyTorch's native convolutions
    gave bit-identical g_s outputs for 1, 2, 3, 4, 6 and 8 threads, at +60 % g_s time (kodim01,
    2 threads, idle machine: 0.39 → 0.63 s). The switch is process-global, hence the lock: no decode runs half with oneDNN; other work running
    meanwhile in other threads is only slower.
    """
    with _INVARIANT_LOCK, torch.backends.mkldnn.flags(enabled=False):
        yield


@dataclass
class Decoded:
    x_hat: np.ndarray  # H×W×3 uint8, what is shown and saved
    y_hat: torch.Tensor  # 1×M×h×w quantized latent (padded grid)
    bitstream: Bitstream

    def __iter__(self):
        return iter((self.x_hat, self.y_hat))


class Codec:
    def __init__(self, model, cfg: CodecConfig, weights_sha256: str, source: str, *, tiling: Tiling = Tiling(),
                 earlier_ids: tuple[bytes, ...] = ()):
        self.model = model.eval().requires_grad_(False)
        guard(self.model)  # native entropy decoding of untrusted strings runs in a child process
        self.tiling = tiling  # replaceable (tests force small tiles); it does not change the format
        self.cfg = cfg
        self.weights_sha256 = weights_sha256  # the whole weights file (or state)
        self.source = source
        self.earlier_ids = earlier_ids  # header ids of earlier releases with the same ŷ (their whole-file hash)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def untrained(cls, quality: int = 1, arch: str = DEFAULT_ARCH, channels: tuple[int, int] | None = None,
                  seed: int = 0) -> "Codec":
        """A freshly initialised model with its entropy tables built (tests; `channels` for tiny ones)."""
        torch.manual_seed(seed)
        cfg = codec_config(arch, quality, channels)
        model = build_model(cfg)
        model.update(force=True)
        return cls(model, cfg, state_fingerprint(model.state_dict()), "untrained")

    @cached_property
    def latent_sha256(self) -> str:
        """What ŷ depends on (`latent_fingerprint`): the key of `.dpx` headers and of the τ decoders' modules."""
        return latent_fingerprint(self.model.state_dict())

    @property
    def weights_id(self) -> bytes:
        """The `.dpx` header's 8-byte id of the model that wrote it."""
        return bytes.fromhex(self.latent_sha256)[:8]

    def fits(self, record: dict) -> bool:
        """Whether a module trained with `record` (a manifest entry or checkpoint: `latent_sha256`, or for
        older records the whole file's `codec_sha256`) decodes this codec's ŷ."""
        if record.get("latent_sha256"):
            return record["latent_sha256"] == self.latent_sha256
        return record.get("codec_sha256") == self.weights_sha256

    @property
    def name(self) -> str:
        return f"{self.cfg.arch} q{self.cfg.quality}"

    # ---- coding -------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, image: ImageSource, *, effort: int = 0, progress: Callable[[int, int], None] | None = None,
               schedule: EffortSchedule = EffortSchedule()) -> bytes:
        """Image → `.dpx` bytes. `effort` > 0 refines the latents for that many iterations before coding
        them (`dpexplorer.codec.effort`: fewer bits at the same quality, slowly; same format, same decoders);
        `progress(done, total)` follows its iterations; `schedule` is tuning's (tools/effort_report.py)."""
        img = load_image(image)
        h, w = img.shape[:2]
        if effort > 0 and h * w > MAX_EFFORT_PIXELS:  # said before any work starts
            raise ImageError(f"encoder effort works on images up to {MAX_EFFORT_PIXELS / 1e6:.1f} MP; this one "
                             f"is {h * w / 1e6:.1f} MP (encode it without effort, or downscale it)")
        y, z = self.analyze(img), None
        if effort > 0:
            y, z = refine_latents(self.model, to_tensor(img), y, iterations=effort, lmbda=self.cfg.lmbda,
                                  schedule=schedule, progress=progress)
        with thread_invariant():  # h_s here must match the decoder's to the bit (scale indexes, means)
            z_shape, strings = self.entropy_encode(y, z)  # entropy_encode frees y as it goes
        return Bitstream(self.cfg.arch, self.cfg.quality, self.weights_id, h, w, z_shape, strings).to_bytes()

    def analyze(self, img: np.ndarray) -> torch.Tensor:
        """y = g_a(x) of the padded image (tiled above the size threshold)."""
        h, w = img.shape[:2]
        hp, wp = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE
        if self.tiling.active(hp, wp):
            return analysis(self.model.g_a, img, hp, wp, tiling=self.tiling)
        return self.model.g_a(pad_to_multiple(to_tensor(img)))

    def entropy_encode(self, y: torch.Tensor, z: torch.Tensor | None = None
                       ) -> tuple[tuple[int, int], tuple[bytes, bytes]]:
        """The latent y → (z grid, (y string, z string)): CompressAI's `compress` after its g_a, step for step,
        so the bytes are those of `model.compress(x)` (tests/unit/test_tiling.py). Unlike `gaussian_conditional.
        compress`, each latent-sized tensor is dropped as soon as its Python list exists: at 48 MP a tensor is
        144 MB and a list 288 MB, and holding them all pushed the encoder's peak over 3 GB. `z` replaces
        h_a(y) (the encoder-effort mode refines both)."""
        m, gc = self.model, self.model.gaussian_conditional
        z = hyper_analysis(m, y) if z is None else z
        z_strings = m.entropy_bottleneck.compress(z)
        z_hat = m.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales, means = scales_and_means(m, z_hat)
        indexes = gc.build_indexes(scales)
        symbols = gc.quantize(y, "symbols", means)
        del y, scales, means
        symbols = symbols.reshape(-1).tolist()
        indexes = indexes.reshape(-1).tolist()
        y_string = gc.entropy_coder.encode_with_indexes(symbols, indexes, gc._quantized_cdf.tolist(),
                                                        gc._cdf_length.reshape(-1).int().tolist(),
                                                        gc._offset.reshape(-1).int().tolist())
        return tuple(int(s) for s in z.shape[-2:]), (y_string, z_strings[0])

    def parse(self, data: bytes) -> Bitstream:
        """Parse and check that `data` was made by this very model (architecture, quality, weights)."""
        bs = Bitstream.from_bytes(data)
        if (bs.arch, bs.quality) != (self.cfg.arch, self.cfg.quality):
            raise BitstreamError(f"bitstream was made by {bs.arch} q{bs.quality}, this decoder is {self.name}")
        if bs.weights_id not in (self.weights_id, *self.earlier_ids):
            raise BitstreamError(f"bitstream was made with other weights ({bs.weights_id.hex()}); "
                                 f"this decoder's are {self.weights_id.hex()}")
        # The rANS encoder writes whole 32-bit words, at least its 8-byte final state, and at most one
        # word per symbol (its output buffer): anything else was not written by it.
        zh, zw = bs.z_shape
        symbols = (self.cfg.M * 16 * zh * zw, self.cfg.N * zh * zw)  # ŷ then ẑ
        if len(bs.strings) != 2:
            raise BitstreamError(f".dpx has {len(bs.strings)} entropy-coded strings, {self.cfg.arch} needs 2")
        for name, string, n in zip(("ŷ", "ẑ"), bs.strings, symbols):
            if len(string) % 4 or not 8 <= len(string) <= 4 * n:
                raise BitstreamError(f".dpx {name} string has an impossible length ({len(string)} bytes "
                                     f"for {n} symbols)")
        return bs

    @torch.inference_mode()
    def decode_latent(self, data: bytes | Bitstream) -> tuple[torch.Tensor, Bitstream]:
        """Entropy decoding only: the quantized latent ŷ (the receiver's whole knowledge of the image)."""
        bs = data if isinstance(data, Bitstream) else self.parse(data)
        m = self.model
        try:
            with thread_invariant():  # ŷ = symbols + means(h_s): the same to the bit for any thread count
                z_hat = m.entropy_bottleneck.decompress([bs.strings[1]], bs.z_shape)
                scales, means = scales_and_means(m, z_hat)
                indexes = m.gaussian_conditional.build_indexes(scales)
                y_hat = m.gaussian_conditional.decompress([bs.strings[0]], indexes, z_hat.dtype, means=means)
        except BitstreamError:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise BitstreamError(f"entropy decoding failed: {exc}") from None
        return y_hat, bs

    @torch.inference_mode()
    def synthesize(self, y_hat: torch.Tensor, height: int, width: int, g_s=None) -> np.ndarray:
        """g_s(ŷ), cropped to the image size, as the 8-bit image that is shown and saved (tiled above the size
        threshold; the latent decoder's ỹ comes through here too). The same ŷ gives the same pixels
        whatever `torch.set_num_threads` says (`thread_invariant`). `g_s` replaces the codec's own
        synthesis transform (the perceptual synthesis at some τ, `dpexplorer.decoders.synthesis`)."""
        g_s = g_s or self.model.g_s
        with thread_invariant():
            if self.tiling.active(*(s * CELL for s in y_hat.shape[-2:])):
                return synthesis(g_s, y_hat, height, width, tiling=self.tiling)
            x_hat = g_s(y_hat)[..., :height, :width]
        return to_uint8(x_hat)

    def decode(self, data: bytes | Bitstream) -> Decoded:
        y_hat, bs = self.decode_latent(data)
        return Decoded(self.synthesize(y_hat, bs.height, bs.width), y_hat, bs)

