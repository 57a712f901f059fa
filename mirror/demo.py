"""The offline quick start's sample: a few hundred image IDs the stand-in serves."""

from __future__ import annotations

import random
import uuid

from sqlalchemy import Engine, func, select

from mirror import db
from mirror.config import masked
from mirror.errors import InputError
from mirror.models import images_table
from mirror.standin import record_for

DEMO_SEED = 2026
MAX_DEMO_IMAGES = 200_000  # more images than any demo makes: certainly a real mirror


def demo_image_ids(count: int) -> list[str]:
    """`count` sample IDs, the same on every run, plus the parents of restaged ones among them."""
    rng = random.Random(DEMO_SEED)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(count)]
    parents = [record_for(i)["parent_image_id"] for i in ids]
    return ids + sorted({p for p in parents if p})


def check_demo_database(engine: Engine, count: int) -> None:
    """Refuse (InputError) a database that holds images other than the demo's own."""
    if not db.mirror_exists(engine):
        return
    where = masked(engine.url)
    refusal = (
        f"{where} holds images that are not demo samples: the demo writes only into its own "
        "database; give it another --database-url (the default is its own file)"
    )
    with db.connect(engine) as connection:
        total = connection.execute(select(func.count()).select_from(images_table)).scalar_one()
        if total > MAX_DEMO_IMAGES:
            raise InputError(refusal)
        # Every demo run of N images holds the first N sample IDs (and their parents), so
        # the first max(count, total) sample IDs cover every image any demo run stored.
        samples = set(demo_image_ids(max(count, int(total))))
        for (image_id,) in connection.execute(select(images_table.c.image_id)):
            if str(image_id) not in samples:
                raise InputError(refusal)
