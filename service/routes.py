"""The route table: it reads like SPEC.md."""

from __future__ import annotations

from aiohttp import web

from service.handlers import health, results, runs, tests, workflows


def add_routes(app: web.Application) -> None:
    """Register every route of the API."""
    app.router.add_routes(
        [
            web.get("/healthz", health.healthz),
            web.get("/readyz", health.readyz),
            # Workflows and blocks
            web.post("/v1/workflows", workflows.create_workflow),
            web.get("/v1/workflows", workflows.list_workflows),
            web.post("/v1/workflows/blocks", workflows.create_block),
            # Saved tests
            web.post("/v1/workflows/tests", tests.create_test),
            web.get("/v1/workflows/tests", tests.list_tests),
            # Test runs
            web.post("/v1/workflows/tests/runs", runs.create_run),
            web.get("/v1/workflows/tests/runs/{run_id}", runs.get_run),
            web.post("/v1/workflows/tests/runs/{run_id}/cancel", runs.cancel_run),
            # Results
            web.get("/v1/workflows/tests/results", results.list_results),
            web.get("/v1/workflows/tests/results/{result_id}", results.get_result),
            # After the fixed paths above, so `blocks` and `tests` are not workflow ids.
            web.get("/v1/workflows/{workflow_id}", workflows.get_workflow),
        ]
    )
