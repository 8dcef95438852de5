"""`testrun`: the CI client of the service, over its HTTP API only.

It creates a run (with an `Idempotency-Key`), follows it through the run's
Server-Sent Events feed (polling when the feed is unavailable), prints the
failures, writes JUnit XML, and exits 0/1/2/3 (see `service.testrun.__main__`).
It imports nothing of the server: stdlib, the aiohttp client and msgspec only.
"""
