"""The offline quick start's sample: an account of a few hundred images in orders that the
stand-in serves, mirrored with `sync --all --with-parents` (spec §7)."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from mirror import db
from mirror.config import masked
from mirror.errors import InputError
from mirror.models import images_table
from mirror.sample_account import SampleAccount
from mirror.standin import record_for

DEMO_SEED = 2026
DEMO_API_KEY = "demo-key"  # the demo's stand-in asks for a key, as the real listing does
MAX_PARENT_GENERATIONS = 10  # as sync --with-parents
MAX_DEMO_IMAGES = 200_000  # more images than any demo makes: certainly a real mirror


def demo_account(count: int) -> SampleAccount:
    """`count` sample images in orders, the same on every run."""
    return SampleAccount.generate(count, seed=DEMO_SEED)


def demo_image_ids(count: int) -> list[str]:
    """The sample account's image IDs, plus the parents of restaged ones among them and
    their parents in turn (not in any order: `--with-parents` fetches them by ID)."""
    ids = demo_account(count).image_ids()
    known = set(ids)
    generation = ids
    for _ in range(MAX_PARENT_GENERATIONS):
        parents = {record_for(i)["parent_image_id"] for i in generation} - known - {None}
        if not parents:
            break
        generation = sorted(parents)
        known.update(generation)
        ids += generation
    return ids


def check_demo_database(engine: Engine, count: int) -> None:
    """Refuse (InputError) a database that holds images other than the demo's own."""
    if db.mirror_absence(engine) is not None:
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
