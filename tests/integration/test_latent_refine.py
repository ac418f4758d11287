"""The latent decoder's first-step fine-tuning (`dpexplorer train latent-refine`): what its first step sees, resuming
from its own teacher, the export over the shipped entry and the decoder reading it, on a tiny untrained codec."""

import json
import shutil

import numpy as np
import pytest
import torch

from dpexplorer.decoders.base import DecodeOptions

from helpers import random_photos


@pytest.fixture
def weights_through_theta1(tmp_path, tiny_weights_dir, monkeypatch):
    """The tiny weights with their latent module trained through θ₁, as the shipped ones are."""
    from dpexplorer.hub.loading import load_codec
    from dpexplorer.hub.manifest import find_entry

    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    manifest = json.loads((weights / "manifest.json").read_text())
    latent_name, _ = find_entry("latent", None, 1, weights)
    theta1 = find_entry("synthesis", None, 1, weights)[1]
    manifest["models"][latent_name] |= {"synthesis_sha256": theta1["sha256"],
                                        "latent_sha256": load_codec(1, None, weights).latent_sha256}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    return weights


def _photos(tmp_path):
    return random_photos(tmp_path / "photos", height=80, width=96)


def test_first_step_trains_from_unit_noise_resumes_and_exports(tmp_path, weights_through_theta1, photo, monkeypatch, capsys):
    from dpexplorer.cli import main
    from dpexplorer.decoders.base import unload_all
    from dpexplorer.decoders.latent.denoiser import LatentDenoiser
    from dpexplorer.decoders.registry import decode_file, reconstruct_file
    from dpexplorer.hub.loading import get_codec
    from dpexplorer.hub.manifest import find_entry

    seen = []
    forward = LatentDenoiser.forward

    def spy(self, r_t, t, y_hat):
        if self.training:
            seen.append((r_t.detach().clone(), t.clone()))
        return forward(self, r_t, t, y_hat)

    monkeypatch.setattr(LatentDenoiser, "forward", spy)
    _, before = find_entry("latent", None, 1, weights_through_theta1)
    data = get_codec(1).encode(photo)
    options = DecodeOptions(sampler="ddim", steps=1, seed=0)
    old = reconstruct_file(data, 1.0, decoder="latent", options=options)
    args = ["train", "latent-refine", "--data", str(_photos(tmp_path)), "--quality", "1", "--workdir", str(tmp_path / "w"),
            "--batch", "4", "--crop", "64", "--threads", "1", "--run-name", "t", "--distill-steps", "2"]
    assert main([*args, "--steps", "2"]) == 0
    run = tmp_path / "w" / "latent-refine-q1-t"
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 2 and ckpt["start"] == before["sha256"]
    # the crop every batch trains at t = 999 sees unit noise, as the sampler's first step does
    assert all(int(t[0]) == 999 for _, t in seen) and all(0.5 < float(r[0].std()) < 1.5 for r, _ in seen)
    assert main([*args, "--steps", "3"]) == 0
    resumed = torch.load(run / "last.pt", weights_only=True)
    assert resumed["step"] == 3
    assert all(torch.equal(resumed["teacher"][k], ckpt["teacher"][k]) for k in ckpt["teacher"])  # its start, kept
    log = (run / "train.log").read_text()
    assert "resumed at step 2" in log and "θ₁ alone" in log

    assert main(["train", "export", "--kind", "latent-refine", str(run / "last.pt")]) == 0
    _, after = find_entry("latent", None, 1, weights_through_theta1)
    assert after["sha256"] != before["sha256"] and after["training"]["refine"]["steps"] == 3
    assert after["synthesis_sha256"] == before["synthesis_sha256"] and after["config"] == before["config"]
    unload_all()
    new = reconstruct_file(data, 1.0, decoder="latent", options=options)
    assert new.shape == photo.shape and not np.array_equal(new, old)
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="latent", options=options), decode_file(data))

    # a θ₁ other than the one the run trained through: the export refuses
    manifest = json.loads((weights_through_theta1 / "manifest.json").read_text())
    name, _ = find_entry("synthesis", None, 1, weights_through_theta1)
    manifest["models"][name]["sha256"] = "0" * 64
    (weights_through_theta1 / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["train", "export", "--kind", "latent-refine", str(run / "last.pt")]) != 0
    assert "another latent or θ₁" in capsys.readouterr().err


def test_a_latent_module_over_the_codec_g_s_is_refused(tmp_path, tiny_weights_dir, monkeypatch):
    from dpexplorer.training.latent_refine import LatentRefineConfig, train_latent_refine

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    cfg = LatentRefineConfig(data=str(_photos(tmp_path)), quality=1, workdir=str(tmp_path / "w"), steps=1, batch=2,
                             crop=64, threads=1)
    with pytest.raises(ValueError, match="not θ₁"):
        train_latent_refine(cfg)


def test_weights_over_an_earlier_theta1_move_to_the_shipped_one(tmp_path, weights_through_theta1):
    """A new θ₁ shipped: the latent module, trained through the earlier one, no longer loads; a refine run trains
    through the θ₁ shipped now, says so, and its export is keyed on it, so the module decodes again."""
    from dpexplorer.cli import main
    from dpexplorer.decoders.base import unload_all
    from dpexplorer.decoders.latent.decoder import LatentDecoder
    from dpexplorer.errors import WeightsError
    from dpexplorer.hub.manifest import find_entry

    manifest = json.loads((weights_through_theta1 / "manifest.json").read_text())
    latent_name, _ = find_entry("latent", None, 1, weights_through_theta1)
    manifest["models"][latent_name]["synthesis_sha256"] = "1" * 64  # trained through an earlier θ₁
    (weights_through_theta1 / "manifest.json").write_text(json.dumps(manifest))
    unload_all()
    with pytest.raises(WeightsError, match="other synthesis weights"):
        LatentDecoder.load(1)
    theta1 = find_entry("synthesis", None, 1, weights_through_theta1)[1]["sha256"]
    args = ["train", "latent-refine", "--data", str(_photos(tmp_path)), "--quality", "1", "--workdir", str(tmp_path / "w"),
            "--batch", "2", "--crop", "64", "--threads", "1", "--run-name", "move", "--distill-steps", "2", "--steps", "1"]
    assert main(args) == 0
    run = tmp_path / "w" / "latent-refine-q1-move"
    assert torch.load(run / "last.pt", weights_only=True)["synthesis_sha256"] == theta1
    assert f"through θ₁ {theta1[:12]}" in (run / "train.log").read_text() and "moving them" in (run / "train.log").read_text()
    assert main(["train", "export", "--kind", "latent-refine", str(run / "last.pt")]) == 0
    assert find_entry("latent", None, 1, weights_through_theta1)[1]["synthesis_sha256"] == theta1
    unload_all()
    assert LatentDecoder.load(1) is not None
