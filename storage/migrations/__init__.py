"""Alembic migrations of the order store, shipped inside the package (storage.db.migrate runs them)."""
