"""What the sampling families share: a denoiser network built from its manifest config, over the
perceptual synthesis its weights were trained through (checked by hash, `trained_synthesis`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from dpexplorer.codec.codec import Codec
from dpexplorer.decoders.base import TauDecoder
from dpexplorer.decoders.synthesis import trained_synthesis


class DenoisingDecoder(TauDecoder):
    """A family whose module is one denoiser (`denoiser_class`, built from the entry's `config`)."""

    denoiser_class: ClassVar[type[torch.nn.Module]]

    @classmethod
    def from_entry(cls, entry: dict, state: dict, codec: Codec, *, directory: Path) -> "DenoisingDecoder":
        denoiser = cls.denoiser_class(**entry["config"])
        denoiser.load_state_dict(state)
        return cls(codec, denoiser, synthesis=trained_synthesis(entry, directory))
