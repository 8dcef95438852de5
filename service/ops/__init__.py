"""Operations: what `scripts/` and the command line call. Replay a run, rebuild
the read models and show the async projections (`replay`), API keys (`keys`),
repair after restore (`repair`), export (`export`), and the demo
workflow (`demo`, `demo_blocks`: an HTTP client of the API, and the functions
its blocks call).

It may import `service.runs`, `service.registry`, `projections` and `events`;
never `service.http`.
"""
