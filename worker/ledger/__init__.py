"""The moderation ledger: jobs, matches, evidence, recalls, plans. The worker's source of truth.

SQLite by default (a file, nothing to install), PostgreSQL in production (``RECALL_DATABASE_URL``);
the schema is managed by Alembic migrations in ``worker/ledger/migrations``.
"""

from worker.ledger.store import Ledger, open_ledger

__all__ = ["Ledger", "open_ledger"]
