"""Every advisory-lock key of the deployment, in one place so that none is taken twice.

PostgreSQL's advisory locks share one key space per database; each key here
names one thing that must happen one at a time.
"""

from __future__ import annotations

# Applying migrations (session lock: every server starting at once waits its turn).
MIGRATIONS = 7_262_011_401
# Creating the bootstrap organisation and API key on first start (transaction lock).
BOOTSTRAP = 7_262_011_402
# Writing a run's stream: every command takes it shared, the rebuild exclusively
# to swap the read models (taken first, before any table lock: no deadlock).
WRITERS = 7_262_011_403
# Leading the async projections (session lock of the leader's own connection).
PROJECTION_LEADER = 7_262_011_404
