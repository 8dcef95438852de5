"""The event-sourced side of a run: lock -> load -> decide -> append -> project
-> announce (`write`), the run's commands (`commands`: create, cancel, reads),
and the runner's commands (`outcomes`: start claimed tests, record outcomes).

Every write to a run's stream goes through `write.decide`. It may import
`service.registry`, `service.models`, `projections` and `events`; never
`service.http` or `service.execution`.
"""
