"""The results of a blind test: per pair, quality and question, how many preferred each side, with a
95 % Wilson interval. Pure functions over answer rows (the store reads them, the tab shows them)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import KW_ONLY, dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n. Unlike the normal approximation it stays inside
    [0, 1] and is honest at small n and at 0/n or n/n, which is what a room of 10 people gives."""
    if n <= 0:
        return 0.0, 1.0  # no answers: nothing is known
    if not 0 <= k <= n:
        raise ValueError(f"k = {k} outside 0…{n}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Result:
    pair: str
    side_a: str
    side_b: str
    quality: int
    _: KW_ONLY
    question: str
    n: int
    a_count: int

    @property
    def b_count(self) -> int:
        return self.n - self.a_count

    @property
    def a_share(self) -> float:
        return self.a_count / self.n if self.n else float("nan")

    @property
    def b_share(self) -> float:
        return self.b_count / self.n if self.n else float("nan")

    @property
    def a_interval(self) -> tuple[float, float]:
        return wilson(self.a_count, self.n)

    @property
    def b_interval(self) -> tuple[float, float]:
        return wilson(self.b_count, self.n)


COLUMNS = ["pair", "question", "quality", "side A", "side B", "n", "A share", "A 95% low", "A 95% high",
           "B share", "B 95% low", "B 95% high"]


def summarize(answers) -> list[Result]:
    """`answers`: (pair, side_a, side_b, quality, question, choice) tuples → one Result per pair,
    quality and question, sorted."""
    n, a = Counter(), Counter()
    for pair, side_a, side_b, quality, question, choice in answers:
        key = (pair, side_a, side_b, int(quality), question)
        n[key] += 1
        a[key] += choice == side_a
    return [Result(*key[:4], question=key[4], n=n[key], a_count=a[key]) for key in sorted(n)]


def table_rows(results: list[Result], label=lambda key: key) -> list[list]:
    """The results as rows under COLUMNS, shares and bounds rounded to 3 decimals; `label` names sides."""
    rows = []
    for r in results:
        (al, ah), (bl, bh) = r.a_interval, r.b_interval
        rows.append([r.pair, r.question, r.quality, label(r.side_a), label(r.side_b), r.n,
                     *(round(x, 3) for x in (r.a_share, al, ah, r.b_share, bl, bh))])
    return rows
