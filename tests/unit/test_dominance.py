"""Which sampler settings the app warns about (`dpexplorer.evaluation.dominance`), on a made-up curves file."""

from dpexplorer.evaluation.dominance import setting_note, setting_points


def _series(sampler, steps, tau0, tau1, images=24):
    return {"kind": "pixel", "quality": 3, "sampler": sampler, "steps": steps, "images": images,
            "points": [{"tau": 0.0, "psnr": tau0[0], "lpips": tau0[1]}, {"tau": 0.5, "psnr": 0, "lpips": 0},
                       {"tau": 1.0, "psnr": tau1[0], "lpips": tau1[1]}]}


CURVES = {"data": "kodak", "images": 24, "series": [
    _series("ddim", 10, (30.0, 0.20), (29.3, 0.14)),
    _series("dpmsolver++", 10, (30.0, 0.20), (29.2, 0.145)),  # loses more PSNR, keeps more LPIPS: dominated
    _series("ddim", 50, (31.0, 0.21), (30.5, 0.16), images=4),  # its own subset: compared by changes
    _series("ddpm", 100, (31.0, 0.21), (23.0, 0.59), images=4),  # worse than the codec decoder on both
    {"kind": "latent", "quality": 3, "sampler": "ddim", "steps": 10,
     "points": [{"tau": 0.0, "psnr": 1, "lpips": 1}, {"tau": 1.0, "psnr": 0, "lpips": 2}]},
]}


def test_points_are_per_family_and_quality():
    assert [(p.sampler, p.steps) for p in setting_points(CURVES, "pixel", 3)] == [
        ("ddim", 10), ("dpmsolver++", 10), ("ddim", 50), ("ddpm", 100)]
    assert setting_points(CURVES, "pixel", 2) == [] and setting_points(None, "pixel", 3) == []


def test_a_setting_worse_than_the_codec_decoder_says_so_with_its_numbers():
    note = setting_note(CURVES, "pixel", 3, "ddpm", 100)
    assert note.startswith("⚠ DDPM 100: noisier and further from the original than the codec decoder on Kodak q3")
    assert "23.00 dB / LPIPS 0.590 against 31.00 / 0.210" in note


def test_a_dominated_setting_names_what_dominates_it_and_the_best_one_gets_no_note():
    assert "DPM-Solver++ 10 is dominated" in setting_note(CURVES, "pixel", 3, "dpmsolver++", 10)
    assert "DDIM 10 keeps more PSNR" in setting_note(CURVES, "pixel", 3, "dpmsolver++", 10)
    assert setting_note(CURVES, "pixel", 3, "ddim", 50) == ""  # −0.5 dB and −24 %: dominated by nothing
    assert setting_note(CURVES, "pixel", 3, "ddim", 10) == ""
    assert setting_note(CURVES, "pixel", 3, "euler", 7) == ""  # not measured: no claim
