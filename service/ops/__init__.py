"""Operations: what `scripts/` and the command line call. Replay a run, rebuild
the read models and show the async projections (`replay`), API keys (`keys`),
repair after restore and export (`repair`).

It may import `service.runs`, `service.registry`, `projections` and `events`;
never `service.http`.
"""
