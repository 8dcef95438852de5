"""The registry: workflows, blocks and saved tests in plain tables (no events),
their ids and fingerprints.

It owns every SQL statement on `workflows`, `blocks` and `workflow_tests`. It
may import `service.models`, `projections` (read-model types) and `events`
(types only); never `service.http`, `service.runs` or `service.execution`.
"""
