"""The app's session without a UI."""

import numpy as np

from dpexplorer.app import session


def test_examples_are_redistributable_files():
    for label, path in session.example_images():
        assert path.is_file() and "kodim" not in path.name
        assert "public domain" in label or "CC0" in label


def test_the_grain_guard_switch_decides_what_weights_tau_and_keys_the_frames(photo):
    """A file without a hint decodes through the shipped grain guard; the switch off decodes uniform τ.
    The τ frames are keyed by the way τ is weighted, so a switch never shows the other way's frames."""
    from dpexplorer.app import handlers, scrub
    from dpexplorer.decoders.base import DecodeOptions
    from dpexplorer.decoders.registry import reconstruct_file
    from dpexplorer.decoders.synthesis import SynthesisDecoder
    from dpexplorer.hub.loading import get_codec

    enc = session.Encoded(get_codec(1).encode(photo), photo)  # no hint
    assert session.has_guard(enc) and session.decode_way(enc) == "guard"
    guarded = session.reconstruct(enc, "synthesis", 1.0)
    handlers.set_use_guard({"enc": enc}, False)
    assert session.decode_way(enc) is None
    uniform = session.reconstruct(enc, "synthesis", 1.0)
    assert np.array_equal(uniform, reconstruct_file(enc.stream, 1.0, decoder="synthesis",
                                                    options=DecodeOptions(use_guard=False)))
    assert not np.array_equal(guarded, uniform)
    keys = {scrub.setting_key(SynthesisDecoder, "ddim", 10, 0, way=way) for way in ("guard", None, "hint")}
    assert len(keys) == 3


def test_launch_calibrates_the_smaller_file_estimate_before_serving(monkeypatch):
    """Calibrated on demand, the estimate ran beside the upload's own encode and kept a figure several times
    too slow; the app measures it for every shipped quality before it takes a request."""
    from dpexplorer.app import layout
    from dpexplorer.codec import effort
    from dpexplorer.hub.loading import shipped_qualities

    effort._seconds_per_megapixel_iteration.cache_clear()
    session.warm_effort_estimates()
    assert effort._seconds_per_megapixel_iteration.cache_info().currsize == len(shipped_qualities())
    hits = effort._seconds_per_megapixel_iteration.cache_info().hits
    assert session.effort_estimate(300, 451, shipped_qualities()[0], 400) > 0
    assert effort._seconds_per_megapixel_iteration.cache_info().hits == hits + 1  # no new calibration

    calls = []
    monkeypatch.setattr(session, "warm_effort_estimates", lambda: calls.append("calibrate"))

    class Demo:
        def launch(self, **kwargs):
            calls.append("serve")

    layout.launch(Demo())
    assert calls == ["calibrate", "serve"]
