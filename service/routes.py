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
            # Saved tests, runs and results: one implementation, served under both
            # names (`tests`: SDK 0.0.155; `evals`: 0.0.160 and later).
            *_test_routes("tests", "test_id"),
            *_test_routes("evals", "eval_id"),
            web.get("/v1/workflows/{workflow_id}", workflows.get_workflow),
            web.patch("/v1/workflows/{workflow_id}", workflows.update_workflow),
            web.delete("/v1/workflows/{workflow_id}", workflows.delete_workflow),
        ]
    )
    console.install(app)


def _test_routes(family: str, id_name: str) -> list[web.RouteDef]:
    """The saved-test routes under `/v1/workflows/<family>`, fixed paths first, so `runs`
    and `results` are never taken for a test id."""
    base = f"/v1/workflows/{family}"
    return [
        web.post(base, tests.create_test),
        web.get(base, tests.list_tests),
        # Test runs
        web.post(f"{base}/runs", runs.create_run),
        web.get(f"{base}/runs", runs.list_runs),
        web.get(f"{base}/runs/{{run_id}}", runs.get_run),
        web.get(f"{base}/runs/{{run_id}}/events", events.run_events),
        web.post(f"{base}/runs/{{run_id}}/cancel", runs.cancel_run),
        # Results
        web.get(f"{base}/results", results.list_results),
        web.get(f"{base}/results/{{result_id}}", results.get_result),
        # After the fixed paths above.
        web.get(f"{base}/{{{id_name}}}", tests.get_test),
        web.patch(f"{base}/{{{id_name}}}", tests.update_test),
        web.delete(f"{base}/{{{id_name}}}", tests.delete_test),
    ]
