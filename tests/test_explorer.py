import numpy as np

from dpexplorer import explorer


def test_zoom_crop_is_nearest_and_clamped():
    img = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    crop = explorer.zoom_crop(img, 1.0, 1.0, size=4, scale=2)
    assert crop.shape == (8, 8, 3)
    assert np.array_equal(crop[::2, ::2], img[6:10, 8:12])  # clamped to the corner, pixels repeated
    assert explorer.zoom_crop(img, 0.5, 0.5, size=64).shape == (40, 40, 3)  # never larger than the image


def test_examples_are_redistributable_files():
    for label, path in explorer.example_images():
        assert path.is_file() and "kodim" not in path.name
        assert "public domain" in label or "CC0" in label


def test_dp_plot_without_and_with_curves():
    fig = explorer.dp_plot(None, {"now": {"psnr": 30.0, "lpips": 0.2}})
    assert fig.axes[0].get_xlabel().startswith("PSNR")
    curves = {"images": 24, "series": [{"label": "q1", "points": [{"psnr": 27, "lpips": 0.4}, {"psnr": 26, "lpips": 0.3}]}]}
    fig = explorer.dp_plot(curves)
    assert len(fig.axes[0].lines) == 1
