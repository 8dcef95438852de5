"""The route table: it reads like SPEC.md."""

from __future__ import annotations

from aiohttp import web

from service import feed
from service.handlers import docs, events, health, metrics, results, runs, tests, workflows
from service.http import console


def add_routes(app: web.Application) -> None:
    """Register every route of the API (and the event feed's LISTEN hub they use)."""
    feed.install(app)
    app.router.add_routes(
        [
            web.get("/healthz", health.healthz),
            web.get("/readyz", health.readyz),
            web.get("/openapi.json", docs.openapi_json),
            web.get("/docs", docs.docs_page),
            web.get("/metrics", metrics.metrics),
            # Workflows and blocks (fixed paths before `{workflow_id}`)
            web.post("/v1/workflows", workflows.create_workflow),
            web.get("/v1/workflows", workflows.list_workflows),
            web.post("/v1/workflows/blocks", workflows.create_block),
            web.get("/v1/workflows/blocks", workflows.list_blocks),
            web.get("/v1/workflows/blocks/{block_id}", workflows.get_block),
            web.patch("/v1/workflows/blocks/{block_id}", workflows.update_block),
            web.delete("/v1/workflows/blocks/{block_id}", workflows.delete_block),
            # Saved tests
            web.post("/v1/workflows/tests", tests.create_test),
            web.get("/v1/workflows/tests", tests.list_tests),
            # Test runs
            web.post("/v1/workflows/tests/runs", runs.create_run),
            web.get("/v1/workflows/tests/runs", runs.list_runs),
            web.get("/v1/workflows/tests/runs/{run_id}", runs.get_run),
            web.get("/v1/workflows/tests/runs/{run_id}/events", events.run_events),
            web.post("/v1/workflows/tests/runs/{run_id}/cancel", runs.cancel_run),
            # Results
            web.get("/v1/workflows/tests/results", results.list_results),
            web.get("/v1/workflows/tests/results/{result_id}", results.get_result),
            # After the fixed paths above, so `runs` and `results` are not test ids.
            web.get("/v1/workflows/tests/{test_id}", tests.get_test),
            web.patch("/v1/workflows/tests/{test_id}", tests.update_test),
            web.delete("/v1/workflows/tests/{test_id}", tests.delete_test),
            web.get("/v1/workflows/{workflow_id}", workflows.get_workflow),
            web.patch("/v1/workflows/{workflow_id}", workflows.update_workflow),
            web.delete("/v1/workflows/{workflow_id}", workflows.delete_workflow),
        ]
    )
    console.install(app)
