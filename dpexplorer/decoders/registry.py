"""The table of decoder families, and opening a `.dpx` for any of them.

`FAMILIES` lists the τ decoder families, the app's default first; the app, the CLI, the evaluation,
the curves and the report read their lists from it. A new family is one module (a `TauDecoder`
subclass) and one entry here (docs/architecture.md).
"""

from __future__ import annotations

import numpy as np

from dpexplorer.codec.codec import Codec
from dpexplorer.decoders.base import DEFAULT_OPTIONS, DecodeOptions, TauDecoder, is_plain, resolve_tau
from dpexplorer.decoders.latent.decoder import LatentDecoder
from dpexplorer.decoders.pixel.decoder import PixelDecoder
from dpexplorer.decoders.plain import PlainDecoder
from dpexplorer.decoders.stream import Stream, open_stream
from dpexplorer.decoders.synthesis import SynthesisDecoder
from dpexplorer.hub.loading import get_codec
from dpexplorer.io.bitstream import Bitstream

# The τ decoder families, the app's default first. The pixel decoder's DDIM 1 (its default setting) refines the
# perceptual synthesis's image. On the same files, Kodak and val_photos, it beats the synthesis at every
# quality: through the grain guard, more PSNR and lower LPIPS; with the sender's hint, as much or more PSNR and
# the same or lower LPIPS, except Kodak q1 (0.5 points); the sender's hint checks its grain too
# (docs/log/2026-12-07-latent-refine-and-pixel-q3.md, docs/log/2026-12-07-hint-checks-the-default-decoder.md).
FAMILIES: dict[str, type[TauDecoder]] = {cls.key: cls for cls in (PixelDecoder, SynthesisDecoder, LatentDecoder)}
# Every family, the codec decoder (τ = 0 of all of them) first.
DECODERS: dict[str, type[TauDecoder]] = {PlainDecoder.key: PlainDecoder, **FAMILIES}


def family(key: str) -> type[TauDecoder]:
    """The family class of `key`, or a ValueError naming the choices."""
    if key not in DECODERS:
        raise ValueError(f"unknown decoder {key!r}; choose from {', '.join(DECODERS)}")
    return DECODERS[key]


def default_family(quality: int) -> str:
    """The family a decode uses when none is named: the first of `FAMILIES` with weights for `quality` (the
    first of all where none has, so that its error says what is missing)."""
    return next((key for key, cls in FAMILIES.items() if quality in cls.qualities()), next(iter(FAMILIES)))


def codec_for(data: bytes, pretrained: bool = False) -> Codec:
    """The codec that made `data` (read from its header: quality and architecture)."""
    header = Bitstream.from_bytes(data)
    return get_codec(header.quality, header.arch, pretrained)


def open_file(data: bytes, pretrained: bool = False) -> Stream:
    """`data` parsed and checked by the codec that made it (header, weights, string lengths)."""
    return open_stream(data, codec_for(data, pretrained))


def load_decoder(key: str, quality: int, arch: str | None = None) -> TauDecoder:
    """The shipped `key` module of `quality`, or a ValueError saying why there is none."""
    cls = family(key)
    if quality not in cls.qualities():
        raise ValueError(f"the {key} decoder has no weights for quality {quality} "
                         f"(it has {', '.join(map(str, cls.qualities())) or 'none'})")
    return cls.load(quality, arch)


def decoder_for(key: str, stream: Stream, tau: float = 1.0, *, options: DecodeOptions = DEFAULT_OPTIONS,
                pretrained: bool = False) -> TauDecoder:
    """What decodes `stream` at τ: the codec decoder where τ (or the τ map) is zero — every family,
    weights or not — else the `key` family's shipped module for the stream's quality."""
    cls = family(key)
    if is_plain(*resolve_tau(stream, tau, options)):
        return PlainDecoder(stream.codec)
    if pretrained:
        raise ValueError("τ > 0 needs the shipped codec (the τ decoders are trained for its latent space)")
    return load_decoder(cls.key, stream.quality, stream.bitstream.arch)


def reconstruct_file(data: bytes | Stream, tau: float = 0.0, *, decoder: str = "synthesis",
                     options: DecodeOptions = DEFAULT_OPTIONS, pretrained: bool = False) -> np.ndarray:
    """Decode a .dpx with the `decoder` family at τ (or `options.tau_map`)."""
    stream = data if isinstance(data, Stream) else open_file(data, pretrained)
    return decoder_for(decoder, stream, tau, options=options, pretrained=pretrained).reconstruct(
        stream, tau, options=options)


def decode_file(data: bytes, pretrained: bool = False) -> np.ndarray:
    """The codec decoder's image of a .dpx (τ = 0)."""
    return open_file(data, pretrained).plain()
