"""The registry: workflows, blocks and saved tests in plain tables (no events),
their ids and fingerprints.

It owns every SQL statement on `workflows`, `blocks` and `workflow_tests` and
raises domain errors (`service.domain`). It may import `service.models`,
`service.paging`, `projections` (read-model types) and `events` (types only);
never `service.http`, `service.runs`, `service.execution` or `service.ops`.
"""
