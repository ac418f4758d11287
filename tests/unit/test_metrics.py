import numpy as np
import pytest

from dpexplorer.io.images import load_image
from dpexplorer.metrics import image as metrics

from helpers import LPIPS_REF, need


def test_lpips_golden_pair():
    d = need(LPIPS_REF)
    ref = load_image(d / "ex_ref.png")
    # The reference implementation: 0.722 and 0.137 to three decimals, 0.7219 and 0.1376 to four.
    assert metrics.lpips(ref, load_image(d / "ex_p0.png")) == pytest.approx(0.7219, abs=6e-5)
    assert metrics.lpips(ref, load_image(d / "ex_p1.png")) == pytest.approx(0.1376, abs=6e-5)


def test_lpips_identical_is_zero(photo):
    assert metrics.lpips(photo, photo) == pytest.approx(0.0, abs=1e-6)


def test_psnr_known_value():
    a = np.zeros((10, 10, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # MSE = 100 / 300
    assert metrics.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / 300)))
    assert metrics.psnr(a, a) == float("inf")


def test_ms_ssim_range():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (192, 192, 3), dtype=np.uint8)
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    assert 0 < metrics.ms_ssim(a, noisy) < 0.99
    assert np.isnan(metrics.ms_ssim(a[:100, :100], a[:100, :100]))  # too small for 5 scales


def test_hf_ratio_sees_blur_and_noise(photo):
    from PIL import Image, ImageFilter

    blurred = np.asarray(Image.fromarray(photo).filter(ImageFilter.GaussianBlur(2)))
    rng = np.random.default_rng(1)
    noisy = np.clip(photo + rng.normal(0, 25, photo.shape), 0, 255).astype(np.uint8)
    assert metrics.hf_energy_ratio(photo, blurred) < 0.5
    assert metrics.hf_energy_ratio(photo, noisy) > 1.2
    assert metrics.hf_energy_ratio(photo, photo) == pytest.approx(1.0)


def test_hf_gap_closed_is_the_share_of_the_way_to_the_original():
    assert metrics.hf_gap_closed(0.6, 0.2) == pytest.approx(0.5)
    assert metrics.hf_gap_closed(0.2, 0.2) == 0.0
    assert np.isnan(metrics.hf_gap_closed(1.3, 1.0))  # no gap to close


def test_size_mismatch_is_an_error(photo):
    with pytest.raises(ValueError, match="differ in size"):
        metrics.psnr(photo, photo[:10])


def test_extra_metrics_run(photo):
    out = metrics.all_metrics(photo, photo, extra=True)
    assert {"psnr", "ms_ssim", "lpips", "hf_ratio", "flip", "ssimulacra2", "nlpd", "ms_gmsd"} <= set(out)
