"""The event-sourced side of a run: lock -> load -> decide -> append -> project
-> announce (`write`), the run's commands (`commands`: create, cancel), the
runner's commands (`outcomes`: start claimed tests, record outcomes; the
deciders are pure functions) and the reads of runs and results (`reads`).

Every write to a run's stream goes through `write.decide`. It may import
`service.registry`, `service.models`, `projections` and `events`; never
`service.http` or `service.execution`.
"""
