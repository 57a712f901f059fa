"""The offline quick start's sample: a few hundred image IDs the stand-in serves."""

from __future__ import annotations

import random
import uuid

from mirror.standin import record_for

DEMO_SEED = 2026


def demo_image_ids(count: int) -> list[str]:
    """`count` sample IDs, the same on every run, plus the parents of restaged ones among them."""
    rng = random.Random(DEMO_SEED)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]
    parents = [record_for(i)["parent_image_id"] for i in ids]
    return ids + sorted({p for p in parents if p})
