from dpexplorer.evaluation.bench import format_bench, run_bench


def test_bench_prints_every_figure(tiny_weights_dir, monkeypatch):
    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    r = run_bench(quality=1, repeat=1, steps=2, cold_start=False)
    text = format_bench(r, steps=2)
    for label in ("encode", "encode with the τ hint", "g_s decode", "τ change, cached sample", "app τ change", "fresh latent sample",
                  "synthesis τ change", "fp32 search", "fast search", "peak memory"):
        assert label in text
    assert r["latent_model"] == "shipped" and r["synthesis_model"] == "shipped" and r["g_s_s"] > 0
    assert r["synthesis_tau_change_s"] > 0 and r["encode_hinted_s"] > 0  # no timing races: figures, not a race
    assert r["effort_iteration_s"]["fp32"] > 0 and r["effort_iteration_s"]["fast"] > 0


def test_bench_large_reports_both_steps(tiny_weights_dir, monkeypatch):
    """`bench --large` plumbing (fresh processes, encode then decode), at a tiny size and model."""
    from dpexplorer.evaluation.bench import large_image

    monkeypatch.setenv("DPEXPLORER_WEIGHTS", str(tiny_weights_dir))
    r = large_image(1, 160, 96)
    assert r["large_size"] == "160x96" and r["large_decode_peak_rss_mib"] > 0 and r["large_encode_s"] > 0
