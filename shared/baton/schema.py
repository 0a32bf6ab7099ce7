"""Schema management: Alembic migrations applied to the configured database."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, pool


def alembic_config(database_url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(resources.files("baton") / "migrations"))
    # Passed as an attribute, not an option: a password may contain '%', which
    # ConfigParser interpolation would mangle.
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    engine = create_engine(database_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
