"""PostgreSQL migrations, numbered with the SQLite ones (storage/migrations)."""
