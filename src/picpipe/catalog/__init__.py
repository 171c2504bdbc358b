"""The catalog: SQLAlchemy models, queries and migrations (SQLite default, PostgreSQL by URL)."""
