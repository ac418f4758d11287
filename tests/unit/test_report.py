"""`dpexplorer report` writes docs/results.md (links relative to it) and assets/, never the README."""

import math

from dpexplorer.evaluation.report import results_markdown, results_page


def test_results_page_links_the_assets_from_docs(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "kodak_tau_crops_q1.png").write_bytes(b"")
    row = {"quality": 1, "decoder": "plain", "sampler": None, "tau": None, "bpp": 0.18, "psnr": 26.98,
           "ms_ssim": 0.91, "lpips": 0.41, "hf_ratio": 0.1, "flip": 0.14, "ssimulacra2": -5.8, "nlpd": 5.3,
           "ms_gmsd": math.nan}
    rows = [{**row, "decoder": d, "tau": t} for d, t in (("latent", 1.0), ("synthesis", 1.0))]
    rows += [{**row, "decoder": "pixel", "sampler": s, "steps": n, "n": k, "tau": 1.0}
             for s, n, k in (("ddpm", 100, 4), ("ddim", 10, 24))]
    result = {"data": "kodak", "images": 24, "date": "2026-11-26T10:00", "means": rows + [row],
              "bd_rate": {"plain_psnr_vs_compressai": 80.6, "webp_lpips_vs_plain": math.nan}}
    text = results_page(results_markdown(result, tmp_path / "assets", tmp_path / "docs" / "results.md"), "bench")
    assert "](../assets/kodak_dp_curves.png)" in text and "](../assets/kodak_tau_crops_q1.png)" in text
    assert "| 1 | plain |  |  | 0.1800 | 26.98 |" in text and "| – |" in text  # NaN is a dash
    decoders = [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| 1 |")]
    assert decoders == ["plain", "synthesis", "latent", "pixel", "pixel"]  # every family, in the app's order
    assert "| pixel | ddim 10 | 1.00 |" in text and "| pixel | ddpm 100 (first 4 images) | 1.00 |" in text
    assert "**+80.6%**" in text and "do not overlap" in text and text.endswith("bench\n")
