"""Which sampler settings of a τ decoder are dominated, read from the measured curves file.

A setting's τ = 1 point is compared with its own τ = 0 point (the codec decoder on the same images:
settings at many steps run on a subset of the set, so their absolute numbers are not comparable with
those of the others) as (PSNR change, LPIPS ratio). Setting A dominates B when A loses no more PSNR
and keeps no more LPIPS, and is better in one of the two; a setting whose τ = 1 point has both lower
PSNR and higher LPIPS than its τ = 0 point is worse than the codec decoder itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SettingPoint:
    sampler: str
    steps: int
    psnr: tuple[float, float]  # τ = 0, τ = 1
    lpips: tuple[float, float]

    @property
    def label(self) -> str:
        return f"{self.sampler.upper() if self.sampler != 'dpmsolver++' else 'DPM-Solver++'} {self.steps}"

    @property
    def psnr_change(self) -> float:
        return self.psnr[1] - self.psnr[0]

    @property
    def lpips_ratio(self) -> float:
        return self.lpips[1] / self.lpips[0]

    def worse_than_codec(self) -> bool:
        return self.psnr[1] < self.psnr[0] and self.lpips[1] > self.lpips[0]

    def dominates(self, other: "SettingPoint") -> bool:
        no_worse = self.psnr_change >= other.psnr_change and self.lpips_ratio <= other.lpips_ratio
        return no_worse and (self.psnr_change > other.psnr_change or self.lpips_ratio < other.lpips_ratio)


def setting_points(curves: dict | None, family: str, quality: int) -> list[SettingPoint]:
    """The measured sampler settings of `family` at `quality` (τ sweeps with τ = 0 and τ = 1 points)."""
    out = []
    for s in (curves or {}).get("series", []):
        if s.get("kind") != family or s.get("quality") != quality or not s.get("sampler"):
            continue
        by_tau = {p.get("tau"): p for p in s["points"]}
        if 0.0 in by_tau and 1.0 in by_tau:
            steps = s.get("steps") or (curves.get("settings") or {}).get("steps") or 0
            out.append(SettingPoint(s["sampler"], int(steps), (by_tau[0.0]["psnr"], by_tau[1.0]["psnr"]),
                                    (by_tau[0.0]["lpips"], by_tau[1.0]["lpips"])))
    return out


def setting_note(curves: dict | None, family: str, quality: int, sampler: str, steps: int) -> str:
    """One line for the app, next to the sampler controls: how this setting measured on the curves'
    images, and what dominates it there; "" when it was not measured or nothing dominates it."""
    points = setting_points(curves, family, quality)
    mine = next((p for p in points if (p.sampler, p.steps) == (sampler, int(steps))), None)
    if mine is None:
        return ""
    data = {"kodak": "Kodak"}.get((curves or {}).get("data"), (curves or {}).get("data") or "the evaluation set")
    where = f"on {data} q{quality} (τ = 1)"
    if mine.worse_than_codec():
        return (f"⚠ {mine.label}: noisier and further from the original than the codec decoder {where}: "
                f"{mine.psnr[1]:.2f} dB / LPIPS {mine.lpips[1]:.3f} against {mine.psnr[0]:.2f} / {mine.lpips[0]:.3f}.")
    better = [p for p in points if p.dominates(mine)]
    if better:
        best = max(better, key=lambda p: (p.psnr_change - mine.psnr_change) + (mine.lpips_ratio - p.lpips_ratio))
        return (f"{mine.label} is dominated {where}: {best.label} keeps more PSNR "
                f"({best.psnr_change:+.2f} vs {mine.psnr_change:+.2f} dB) and less LPIPS "
                f"({100 * (best.lpips_ratio - 1):+.0f} % vs {100 * (mine.lpips_ratio - 1):+.0f} %).")
    return ""
