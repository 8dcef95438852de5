"""Execution: the runner loop (`runner`), the work queue (`queue`), the block
executors (`executors`), outbound safety (`outbound`) and the assertion engine
(`assertions`).

It decides nothing about a run's state: it records what happened through
`service.runs.outcomes`. It may import `service.runs`, `service.registry`,
`service.models`, `projections` and `events`; never `service.http` or
`service.ops`.
"""
