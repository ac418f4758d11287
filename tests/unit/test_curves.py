"""The D–P plane plot of the curves file (the app's plot)."""

from dpexplorer.evaluation.curves import dp_plot


def test_dp_plot_without_and_with_curves():
    fig = dp_plot(None, {"now": {"psnr": 30.0, "lpips": 0.2}})
    assert fig.axes[0].get_xlabel().startswith("PSNR")
    curves = {"images": 24, "series": [{"label": "q1", "points": [{"psnr": 27, "lpips": 0.4}, {"psnr": 26, "lpips": 0.3}]}]}
    fig = dp_plot(curves)
    assert len(fig.axes[0].lines) == 1


def test_dp_plot_highlights_the_quality_and_keeps_the_legend_outside():
    curves = {"images": 24, "series": [
        {"label": "codec decoder", "kind": "plain", "points": [{"psnr": 27, "lpips": 0.4}, {"psnr": 30, "lpips": 0.2}]},
        *({"label": f"q{q} {s}", "kind": "latent", "quality": q, "sampler": s,
           "points": [{"psnr": 26 + q, "lpips": 0.4 - q / 10}, {"psnr": 25 + q, "lpips": 0.3 - q / 10}]}
          for q in (1, 2) for s in ("ddim", "ddpm"))]}
    own = [{"tau": t, "psnr": 29 - t, "lpips": 0.3 - t / 10} for t in (0.0, 0.5, 1.0)]
    fig = dp_plot(curves, {"now": {"psnr": 28.5, "lpips": 0.25}}, quality=2, own_curve=own)
    ax = fig.axes[0]
    by_label = {line.get_label(): line for line in ax.lines}
    assert by_label["q2 ddim"].get_alpha() == 1.0 and by_label["q2 ddim"].get_linestyle() == "-"
    assert by_label["q2 ddpm"].get_linestyle() == "--"  # the sampler is the line style
    assert "q1 ddim" not in by_label and by_label["other qualities"].get_alpha() < 0.5  # faint, one entry
    assert "this image: τ curve" in by_label and "now" in by_label
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes.x1  # outside the axes: never over the curves
    title = ax.title.get_window_extent()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.width  # not clipped


def test_curve_series_draws_the_raw_sweep_through_the_guard_or_the_hinted_decodes():
    from dpexplorer.evaluation.full_eval import curve_series

    def row(tau, lpips, **flags):
        return {"decoder": "synthesis", "quality": 1, "sampler": None, "steps": None, "tau": tau, "n": 2,
                "bpp": 0.2, "psnr": 27.0, "ms_ssim": 0.9, "lpips": lpips, **flags}

    plain = {"decoder": "plain", "quality": 1, "bpp": 0.2, "psnr": 27.0, "ms_ssim": 0.9, "lpips": 0.4}
    means = [plain, row(0.0, 0.4, guard=True), row(1.0, 0.3, guard=True), row(0.0, 0.4, hint=True),
             row(1.0, 0.25, hint=True)]
    raw = {s["kind"]: s for s in curve_series({"means": means})}
    hinted = {s["kind"]: s for s in curve_series({"means": means}, hinted=True)}
    assert [p["lpips"] for p in raw["synthesis"]["points"]] == [0.4, 0.3]
    assert [p["lpips"] for p in hinted["synthesis"]["points"]] == [0.4, 0.25]
    assert raw["plain"] == hinted["plain"]
