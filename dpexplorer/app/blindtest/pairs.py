"""What a blind round compares: the catalogue of pairs, the two questions, and which side goes left.

A side key names a decode the host app can render for the current image ("tau0", "tau1", "avif",
…); a pair is two side keys. Which one is shown on the left is drawn per round from a seeded RNG, so a
round can be replayed (tests, audits) and the position carries no information about the side."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

# Side key → label revealed in the results (never shown while answering).
SIDES: dict[str, str] = {
    "tau0": "τ = 0 (codec decoder)",
    "tau1": "τ = 1 (perceptual decoder)",
    "avif": "AVIF, same size",
    "webp": "WebP, same size",
    "jpeg": "JPEG, same size",
    "sampler-a": "τ = 1, sampler A",
    "sampler-b": "τ = 1, sampler B",
}
_SIDE_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class Pair:
    key: str
    a: str  # the results give the share preferring `a` (and `b`)
    b: str

    @property
    def label(self) -> str:
        return f"{side_label(self.a)} vs {side_label(self.b)}"


PAIRS: dict[str, Pair] = {p.key: p for p in (
    Pair("tau0-vs-tau1", "tau0", "tau1"),
    Pair("tau1-vs-avif", "tau1", "avif"),
    Pair("tau1-vs-webp", "tau1", "webp"),
    Pair("sampler-a-vs-b", "sampler-a", "sampler-b"),
)}
CUSTOM = "custom"

# The two axes of the tradeoff: distortion is judged against the original, perception without it.
QUESTIONS: dict[str, str] = {
    "closer": "Which is closer to the original?",
    "realism": "Which looks more like a real photograph?",
}
# "alternate" asks the two questions in turn, round by round.
QUESTION_MODES = (*QUESTIONS, "alternate")


def side_label(key: str) -> str:
    return SIDES.get(key, key)


def check_side(key: str) -> str:
    """A side key as stored: short, lower-case, no spaces (it ends up in the database and the CSV)."""
    if not isinstance(key, str) or not _SIDE_KEY.fullmatch(key):
        raise ValueError(f"not a side key: {key!r} (lower-case letters, digits, '-', '_', '.'; up to 32)")
    return key


def get_pair(key: str, *, custom_a: str | None = None, custom_b: str | None = None) -> Pair:
    """A catalogue pair by key, or with key "custom" the pair of two side keys (its key "a-vs-b")."""
    if key == CUSTOM:
        a, b = check_side(custom_a), check_side(custom_b)
        if a == b:
            raise ValueError("a custom pair needs two different sides")
        return PAIRS.get(f"{a}-vs-{b}") or Pair(f"{a}-vs-{b}", a, b)
    if key not in PAIRS:
        raise ValueError(f"unknown pair {key!r}; one of {', '.join(PAIRS)} or {CUSTOM}")
    return PAIRS[key]


def question_for(mode: str, round_index: int) -> str:
    if mode == "alternate":
        return ("closer", "realism")[round_index % 2]
    if mode not in QUESTIONS:
        raise ValueError(f"unknown question {mode!r}; one of {', '.join(QUESTION_MODES)}")
    return mode


def round_seed(session_seed: int, round_index: int) -> int:
    """One seed per round, from the session's seed and the round's index (hashed: consecutive rounds
    are unrelated draws, not neighbouring seeds of the same generator)."""
    digest = hashlib.sha256(f"{session_seed}:{round_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def assign_sides(pair: Pair, seed: int) -> tuple[str, str]:
    """(left, right) side keys for a round: a fair coin from `seed`."""
    return (pair.a, pair.b) if random.Random(seed).random() < 0.5 else (pair.b, pair.a)
