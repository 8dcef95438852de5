"""Operations: what `scripts/` and the command line call. Replay a run, rebuild
the read models and show the async projections (`replay`), API keys (`keys`),
repair after restore (`repair`) and export (`export`).

It may import `service.runs`, `service.registry`, `projections` and `events`;
never `service.http`.
"""
