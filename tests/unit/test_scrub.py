"""The τ frames of a sweep (`dpexplorer.app.scrub`): the grid, the settings a frame depends on, the
bounded number of frame sets, and a sweep that draws one sample and measures every frame."""

from types import SimpleNamespace

import numpy as np
import pytest

from dpexplorer.app import scrub
from dpexplorer.decoders.latent.decoder import LatentDecoder
from dpexplorer.decoders.synthesis import SynthesisDecoder
from dpexplorer.io.images import load_image, save_png


def test_the_frame_grid_and_on_grid():
    assert scrub.FRAME_TAUS == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert scrub.on_grid(0.3) == 0.3 and scrub.on_grid(0.30000000001) == 0.3
    assert scrub.on_grid(0.35) is None and scrub.on_grid(0.299) is None


def test_a_setting_names_the_sampler_only_where_the_family_samples():
    assert scrub.setting_key(SynthesisDecoder, "ddpm", 50, 3) == ("synthesis",)
    assert scrub.setting_key(LatentDecoder, "ddpm", 50.0, 3) == ("latent", "ddpm", 50, 3)
    deterministic = scrub.sampling_options(SynthesisDecoder, "ddpm", 50, 3)
    assert (deterministic.sampler, deterministic.steps, deterministic.seed) == ("ddim", 10, 0)  # the defaults
    sampling = scrub.sampling_options(LatentDecoder, "euler", "7", 2)
    assert (sampling.sampler, sampling.steps, sampling.seed) == ("euler", 7, 2)


def test_a_family_decodes_only_with_a_sampler_it_offers():
    """Switching to the pixel decoder while DDPM is chosen: the list becomes its own, and a render that
    still sees DDPM (the two events race) decodes with its first sampler rather than failing."""
    from dpexplorer.app import handlers, session
    from dpexplorer.decoders.pixel.decoder import PixelDecoder

    assert [k for _, k in session.sampler_choices(PixelDecoder)] == ["ddim", "dpmsolver++"]
    assert [k for _, k in session.sampler_choices(LatentDecoder)] == ["ddim", "ddpm", "dpmsolver++", "euler"]
    assert scrub.sampling_options(PixelDecoder, "ddpm", 10, 0).sampler == "ddim"
    assert scrub.setting_key(PixelDecoder, "ddpm", 10, 0) == scrub.setting_key(PixelDecoder, "ddim", 10, 0)
    assert scrub.sampling_options(PixelDecoder, "dpmsolver++", 10, 0).sampler == "dpmsolver++"
    sampler, steps, _ = handlers.sampler_controls("pixel", "ddpm")
    assert sampler["value"] == "ddim" and [k for _, k in sampler["choices"]] == ["ddim", "dpmsolver++"]
    assert steps["value"] == PixelDecoder.default_steps == 1  # the pixel decoder starts at its one-step refiner
    latent_sampler, latent_steps, _ = handlers.sampler_controls("latent", "ddpm")
    assert latent_sampler["value"] == "ddpm" and latent_steps["value"] == 10  # kept where offered
    assert handlers.sampler_controls("synthesis", "ddpm")[0]["visible"] is False


def test_only_the_latest_settings_keep_their_frames():
    enc = SimpleNamespace(_frames={})
    keys = [("latent", "ddim", 10, s) for s in range(scrub.MAX_SETTINGS + 2)]
    for key in keys:
        scrub.frame_set(enc, key)
    assert list(enc._frames) == keys[-scrub.MAX_SETTINGS:]
    scrub.frame_set(enc, keys[-scrub.MAX_SETTINGS])  # asked again: the most recent now
    assert scrub.latest_setting(enc) == keys[-scrub.MAX_SETTINGS]


def test_frames_whose_file_went_are_dropped_and_the_curve_has_measured_frames_only(tmp_path):
    original = np.full((64, 64, 3), 100, np.uint8)
    enc = SimpleNamespace(_frames={}, original=original)
    fs = scrub.frame_set(enc, ("synthesis",))
    for i, tau in enumerate((0.0, 0.5, 1.0)):
        image = np.full_like(original, 100 + 10 * i)
        scrub.add_frame(enc, fs, tau, image, write_png=lambda im, i=i: str(save_png(im, tmp_path / f"{i}.png")),
                        measure=tau != 1.0)
    assert [f.tau for f in fs.ready()] == [0.0, 0.5, 1.0]
    curve = fs.curve()
    assert [p["tau"] for p in curve] == [0.0, 0.5]  # τ = 1 not measured yet
    assert curve[0]["psnr"] == float("inf") or curve[0]["psnr"] > 90  # identical to the original
    (tmp_path / "1.png").unlink()  # swept
    assert [f.tau for f in fs.ready()] == [0.0, 1.0]


@pytest.mark.parametrize("family", [SynthesisDecoder, LatentDecoder], ids=lambda f: f.key)
def test_a_sweep_renders_every_frame_then_its_curve(family, tiny_weights_dir, monkeypatch, photo, tmp_path):
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    from dpexplorer.app import session

    enc = session.encode(photo, 1)
    names = iter(range(100))
    events = list(scrub.render_frames(enc, family, "ddim", 2, seed=0,
                                      write_png=lambda im: str(save_png(im, tmp_path / f"{next(names)}.png"))))
    phases = [e[0] for e in events]
    assert phases == ["frames"] * 11 + ["curve"] * 11  # every frame is on screen before the curve
    fs = scrub.frame_set(enc, scrub.setting_key(family, "ddim", 2, 0, way=session.decode_way(enc)))
    assert np.array_equal(session.reconstruct(enc, family.key, 0.0), session.base_reconstruction(enc))
    one = fs.frames[1.0]
    assert np.array_equal(load_image(one.png), session.reconstruct(enc, family.key, 1.0, scrub.sampling_options(family, "ddim", 2, 0)))
    assert len(fs.curve()) == 11 and all(p["lpips"] is not None for p in fs.curve())
