"""A small least-recently-used cache for decoded latents and samples (one per decoder pipeline)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable


class LRU(OrderedDict):
    """Bounded by the total `weight` of its values (default 1 each: a count; `nbytes`: a size in bytes).
    The newest entry is always kept, even alone above the limit."""

    def __init__(self, limit: int, weight: Callable[[object], int] = lambda value: 1):
        super().__init__()
        self.limit, self.weight = limit, weight

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > 1 and sum(self.weight(v) for v in self.values()) > self.limit:
            self.popitem(last=False)
        return value
