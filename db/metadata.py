"""The one MetaData the database is described on, which Alembic compares with the migrations.

Every table module (the kit's tables as db.tables makes them, and each
owner's business tables) registers its tables here; db.tables imports them
all, so `db.tables.metadata` is complete. Views are read, never migrated
from here: they stand on a MetaData of their own.
"""

from __future__ import annotations

from sqlalchemy import MetaData

metadata = MetaData()
views = MetaData()
