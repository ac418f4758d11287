"""Loads and verifies the shipped files: the codec, once per process, and the weights of each τ
decoder's module (`module_weights`; the family classes in `dpexplorer.decoders` build themselves from
them, so nothing here knows a decoder).

The codec comes from `weights/` (`load_codec`, hash-checked) or from CompressAI's published weights
(`pretrained_codec`); a τ decoder's weights are refused unless their manifest entry names the
shipped codec's ŷ (its `latent_sha256`).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

import torch

from dpexplorer.codec.codec import Codec, state_fingerprint
from dpexplorer.codec.config import build_model, codec_config
from dpexplorer.errors import WeightsError
from dpexplorer.hub.files import load_weights
from dpexplorer.hub.manifest import find_entry, load_manifest, weights_dir


def load_codec(quality: int, arch: str | None = None, directory: Path | None = None) -> Codec:
    """The shipped, trained model of `quality` from `weights/` (or `directory`), hash-checked."""
    name, entry = find_entry("codec", arch, quality, directory)  # the manifest, read once per change
    cfg = codec_config(entry["arch"], quality, (entry["N"], entry["M"]))
    model = build_model(cfg)
    state = load_weights(entry, directory)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{name}: weights do not fit {cfg.arch} (N={cfg.N}, M={cfg.M}): {exc}") from None
    earlier = tuple(bytes.fromhex(i) for i in entry.get("earlier_weights_ids", ()))
    codec = Codec(model, cfg, entry["sha256"], f"weights/{entry['file']}", earlier_ids=earlier)
    if entry.get("latent_sha256") and entry["latent_sha256"] != codec.latent_sha256:
        raise WeightsError(f"{name}: its entry's latent_sha256 does not match the file")
    return codec


def pretrained_codec(quality: int, arch: str = "bmshj2018-hyperprior") -> Codec:
    """CompressAI's published MSE weights (downloaded once to $TORCH_HOME/hub/checkpoints).

    Loaded with `weights_only=True`: the checkpoint is a plain state dict, nothing is unpickled.
    """
    from compressai.zoo.image import model_urls
    from compressai.zoo.pretrained import load_pretrained

    cfg = codec_config(arch, quality)
    url = model_urls[arch]["mse"][quality]
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                   check_hash=True, weights_only=True)
    except OSError as exc:  # offline and not cached
        raise WeightsError(f"cannot fetch CompressAI's pretrained {arch} q{quality} ({exc}); "
                           f"place {url.rsplit('/', 1)[-1]} in $TORCH_HOME/hub/checkpoints/") from None
    state = load_pretrained(state)
    model = type(build_model(cfg)).from_state_dict(state)
    model.update(force=True)
    fingerprint = state_fingerprint(model.state_dict())
    # before the header keyed on the latent model, it held the whole state's fingerprint
    return Codec(model, cfg, fingerprint, url, earlier_ids=(bytes.fromhex(fingerprint)[:8],))


_lock = threading.Lock()


@lru_cache(maxsize=None)
def _cached_codec(quality: int, arch: str, pretrained: bool, directory: str) -> Codec:
    if pretrained:
        return pretrained_codec(quality, arch)
    return load_codec(quality, arch, Path(directory))


def get_codec(quality: int, arch: str | None = None, pretrained: bool = False) -> Codec:
    """The codec of `quality` (shipped weights, or CompressAI's with `pretrained`), loaded once."""
    if arch is None:  # resolve first, so that "default" and its explicit name share one cache entry
        arch = "bmshj2018-hyperprior" if pretrained else find_entry("codec", None, quality)[1]["arch"]
    with _lock:
        return _cached_codec(quality, arch, pretrained, str(weights_dir()))


def shipped_qualities() -> list[int]:
    """Qualities with trained codec weights in weights/, ascending."""
    return module_qualities("codec")


def module_weights(kind: str, codec: Codec, directory: Path | None = None) -> tuple[dict, dict]:
    """The manifest entry and hash-checked weights of the shipped `kind` module ("latent", "pixel",
    "synthesis") of the codec's quality, refused unless they were trained for this codec's ŷ."""
    name, entry = find_entry(kind, codec.cfg.arch, codec.cfg.quality, directory)
    if not codec.fits(entry):
        raise WeightsError(f"{name} was trained for other codec weights than the shipped {codec.name}")
    return entry, load_weights(entry, directory)


def module_qualities(kind: str) -> list[int]:
    """Qualities with `kind` weights ("codec", "latent", …) in weights/, ascending."""
    models = load_manifest()["models"].values()
    return sorted({e["quality"] for e in models if e.get("kind") == kind})
