"""Alembic migrations of Baton's schema; applied by ``baton db upgrade``."""
