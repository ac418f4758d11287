"""The pixel-space diffusion decoder (issue 18) on a tiny untrained codec: denoiser, samplers, τ, tiles,
caching, training (2 steps), export → the decoder registry, evaluation and the bench's step timings."""

import argparse
import shutil

import numpy as np
import pytest
import torch

from dpexplorer.io.images import save_png

TINY = dict(space_to_depth=4, width=16, mults=(1, 2), blocks=1)


def _denoiser(prediction_type="sample", seed=0):
    from dpexplorer.decoders.pixel.denoiser import PixelDenoiser

    torch.manual_seed(seed)
    den = PixelDenoiser(24, prediction_type=prediction_type, **TINY)
    torch.nn.init.normal_(den.out.weight, std=0.05)  # untrained but not the zero residual of a fresh init
    den.residual_scale.fill_(0.05)
    return den


@pytest.fixture
def pipeline(tiny_codec):
    from dpexplorer.decoders.pixel.pipeline import PixelPipeline

    return PixelPipeline(tiny_codec, _denoiser())


@pytest.fixture
def data(tiny_codec, photo):
    return tiny_codec.encode(photo)  # 96×128: the padded grid is 128×128


def test_denoiser_shapes_for_ours_and_the_paper_configurations():
    from dpexplorer.decoders.pixel.denoiser import CDC, PAPER_001, PixelDenoiser

    for cfg in (TINY, {**PAPER_001, "width": 16}, {**CDC, "width": 16}):
        den = PixelDenoiser(24, **cfg)
        h, w = 2 * den.multiple, 3 * den.multiple
        out = den(torch.randn(2, 3, h, w), torch.tensor([3, 900]), torch.rand(2, 3, h, w),
                  torch.randn(2, 24, h // 16, w // 16))
        assert out.shape == (2, 3, h, w)
    assert PixelDenoiser(24, **TINY).config()["mults"] == [1, 2]


def test_tau0_is_the_plain_decoder_bit_for_bit_and_tau_changes_cost_no_network_pass(pipeline, data, tiny_codec,
                                                                                    monkeypatch):
    plain = tiny_codec.decode(data).x_hat
    assert np.array_equal(pipeline.reconstruct(data, 0.0), plain)
    assert np.array_equal(pipeline.base(data)[:96, :128], plain)  # the blend starts from exactly this image
    x1 = pipeline.reconstruct(data, 1.0, "ddim", 3, 0)
    assert x1.shape == plain.shape and x1.dtype == np.uint8 and not np.array_equal(x1, plain)

    calls = []
    forward = type(pipeline.denoiser).forward
    monkeypatch.setattr(type(pipeline.denoiser), "forward", lambda *a: calls.append(1) or forward(*a))
    half = pipeline.reconstruct(data, 0.5, "ddim", 3, 0)
    assert calls == []  # cached sample: a τ change is a blend only
    expected = np.rint(plain.astype(np.float32) + 0.5 * (x1.astype(np.float32) - plain)).astype(np.uint8)
    assert np.array_equal(half, expected)
    assert np.array_equal(pipeline.reconstruct(data, 1.0, "ddim", 3, 0), x1)
    pipeline.reconstruct(data, 1.0, "ddim", 3, 0, noise_scale=0.8)  # another sample: the noise scale is in the key
    assert len(calls) == 3


def test_samplers_seeds_progress_and_prediction_types(tiny_codec, data):
    from dpexplorer.decoders.pixel.pipeline import PixelPipeline

    for prediction in ("sample", "epsilon"):
        pipe = PixelPipeline(tiny_codec, _denoiser(prediction))
        seen = []
        a = pipe.reconstruct(data, 1.0, "ddpm", 4, 0, progress=lambda i, n: seen.append((i, n)))
        assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
        assert not np.array_equal(a, pipe.reconstruct(data, 1.0, "ddpm", 4, 1))  # the seed matters
        assert np.array_equal(a, pipe.sample(data, "ddpm", 4, 0))  # and reproduces
        for sampler in ("ddim", "dpmsolver++"):
            assert pipe.reconstruct(data, 1.0, sampler, 2, 0).shape == a.shape
    for bad in (dict(tau=1.5), dict(sampler="nope"), dict(steps=0), dict(noise_scale=0.0)):
        with pytest.raises(ValueError):
            PixelPipeline(tiny_codec, _denoiser()).reconstruct(data, **{"tau": 1.0, **bad})
    with pytest.raises(ValueError, match="prediction type"):
        _denoiser("v_prediction")


def test_tiles_blend_to_the_untiled_prediction_for_a_local_denoiser(tiny_codec, data):
    """With a denoiser that has no spatial context, tiling must not change anything: the ramps sum correctly."""
    from dpexplorer.decoders.pixel.pipeline import PixelPipeline, PixelTiling, ramp, tile_spans

    assert tile_spans(128, 64, 32) == [(0, 64), (32, 96), (64, 128)]
    assert tile_spans(100, 128, 32) == [(0, 100)]
    assert float(ramp(64, True, True, 16).min()) > 0

    class Local(torch.nn.Module):
        prediction_type, multiple = "sample", 8
        residual_scale = torch.tensor(0.05)

        def forward(self, r_t, t, x_base, y_hat):
            return 0.5 * r_t + torch.sin(7 * x_base) + 0.001 * t

    whole = PixelPipeline(tiny_codec, Local()).sample(data, "ddim", 3, 0)
    tiled = PixelPipeline(tiny_codec, Local(), PixelTiling(tile=64, overlap=32))
    assert np.abs(tiled.sample(data, "ddim", 3, 0).astype(int) - whole).max() <= 1
    with pytest.raises(ValueError):
        PixelPipeline(tiny_codec, Local(), PixelTiling(tile=72, overlap=32))
    # a real denoiser on tiles: right shape, no seams beyond the image's own range
    real = PixelPipeline(tiny_codec, _denoiser(), PixelTiling(tile=64, overlap=32)).reconstruct(data, 1.0, "ddim", 2, 0)
    assert real.shape == whole.shape


def test_sample_cache_is_bounded_in_bytes():
    from dpexplorer.cache import LRU

    lru = LRU(250, weight=lambda a: a.nbytes)
    for k in range(5):
        lru.get_or(k, lambda: np.zeros(100, np.uint8))
    assert list(lru) == [3, 4]
    lru.get_or("big", lambda: np.zeros(1000, np.uint8))
    assert list(lru) == ["big"]  # the newest is kept even above the bound
    counted = LRU(2)
    for k in range(3):
        counted.get_or(k, lambda: None)
    assert list(counted) == [1, 2]


def test_training_resumes_exports_and_the_registry_decodes_with_it(tmp_path, tiny_weights_dir, photo, monkeypatch):
    from dpexplorer.decoders.registry import decode_file, reconstruct_file
    from dpexplorer.hub.loading import get_codec, load_codec, pixel_qualities
    from dpexplorer.training.common import add_config_arguments, configs_from_args
    from dpexplorer.training.pixel import PixelTrainConfig, export_pixel, train_pixel

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        save_png(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8), photos / f"p{i}.png")
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights_dir, weights)
    codec = load_codec(1, None, weights)

    p = argparse.ArgumentParser()
    add_config_arguments(p, PixelTrainConfig)
    [cfg] = configs_from_args(p.parse_args(["--data", str(photos), "--quality", "1", "--workdir", str(tmp_path / "w"),
                                         "--steps", "2", "--batch", "2", "--crop", "64", "--threads", "1",
                                         "--width", "16", "--mults", "1,2", "--prediction-type", "epsilon",
                                         "--run-name", "t"]), PixelTrainConfig)
    assert cfg.rho == PixelTrainConfig.rho and cfg.prediction_type == "epsilon"
    ckpt = train_pixel(cfg, codec=codec)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 2 and 0 < float(state["denoiser"]["residual_scale"]) < 1
    cfg.steps = 3
    train_pixel(cfg, codec=codec)
    assert torch.load(ckpt, weights_only=True)["step"] == 3
    log = (cfg.run_dir() / "train.log").read_text()
    assert "resumed from" in log and "lpips(x̂0)" in log

    entry = export_pixel(ckpt, weights)
    assert entry["kind"] == "pixel" and entry["codec_sha256"] == codec.weights_sha256
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(weights))
    assert pixel_qualities() == [1]
    data = get_codec(1).encode(photo)
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="pixel"), decode_file(data))
    seen = []
    x = reconstruct_file(data, 1.0, "ddim", 2, 0, decoder="pixel", progress=lambda i, n: seen.append(i))
    assert x.shape == photo.shape and seen == [1, 2]

    from dpexplorer.app.session import FAMILIES

    assert 1 in FAMILIES["pixel"].qualities()


def test_the_pixel_family_is_offered_only_with_weights(tiny_weights_dir, monkeypatch, photo):
    from dpexplorer.app.session import FAMILIES
    from dpexplorer.decoders.registry import decode_file, reconstruct_file
    from dpexplorer.hub.loading import get_codec, pixel_qualities

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    assert FAMILIES["pixel"].qualities() == [] and pixel_qualities() == []
    data = get_codec(1).encode(photo)
    with pytest.raises(ValueError, match="no weights"):
        reconstruct_file(data, 0.5, decoder="pixel")
    assert np.array_equal(reconstruct_file(data, 0.0, decoder="pixel"), decode_file(data))


def test_eval_reports_the_bar(pipeline, tmp_path, photo):
    from dpexplorer.evaluation.pixel_eval import evaluate_images, markdown_table, summarize

    save_png(photo, tmp_path / "a.png")
    save_png(photo[:, ::-1].copy(), tmp_path / "b.png")
    settings = ("ddim:2", "ddpm:3")
    rows = evaluate_images(pipeline, sorted(tmp_path.glob("*.png")), settings, (1.0,), fast_steps=2, slow_limit=1,
                           log=lambda *_: None)
    assert "ddpm:3" in rows[0]["settings"] and "ddpm:3" not in rows[1]["settings"]  # the slow subset
    s = summarize(rows, settings, (1.0,))
    assert s["settings"]["ddpm:3"]["images"] == 1 and s["settings"]["ddim:2"]["images"] == 2
    assert s["plain"]["lpips"] >= 0 and "| ddim:2 | 1 |" in markdown_table("t", s)


def test_bench_times_ours_and_the_paper_configurations():
    from dpexplorer.evaluation.bench import pixel_step_times

    r = pixel_step_times(repeat=1, crop=32, latent_channels=24)
    assert set(r) == {"ours", "paper001", "cdc"}
    assert r["ours"]["scale"] == 1 and r["paper001"]["scale"] == 768 * 512 / 32**2
    assert r["paper001"]["params_m"] > 10 * r["ours"]["params_m"] and all(v["step_s"] > 0 for v in r.values())


def test_cli_train_and_eval_pixel_parse():
    from dpexplorer.cli import build_parser

    from dpexplorer.training.common import configs_from_args
    from dpexplorer.training.pixel import PixelTrainConfig

    a = build_parser().parse_args(["train", "pixel", "--data", "d", "--quality", "1", "--minutes", "2"])
    [cfg] = configs_from_args(a, PixelTrainConfig)  # flags given only; the dataclass holds the defaults
    assert cfg.minutes == 2.0 and cfg.prediction_type == "sample" and a.func.__name__ == "cmd_train_pixel"
    a = build_parser().parse_args(["eval", "pixel", "--set", "k=d", "--settings", "ddim:10", "ddpm:100"])
    assert a.func.__name__ == "cmd_eval_pixel" and a.settings == ["ddim:10", "ddpm:100"]
