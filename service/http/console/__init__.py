"""The web console: server-rendered pages over the API's read models, at `/` and `/console/`.

Sessions come from an API key (see `sessions`); every page shows only the
signed-in organisation's data; forms are guarded against cross-site requests
(see `guard`). Its only script repaints a running run's counts from the feed.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from service.http.console import auth, result_pages, run_pages, workflow_pages

STATIC = Path(__file__).parent / "static"


def install(app: web.Application) -> None:
    """Register the console's routes and its static files on `app`."""
    app.router.add_routes(
        [
            web.get("/", auth.root),
            web.get("/console", auth.root),
            web.get("/console/sign-in", auth.sign_in_page),
            web.post("/console/sign-in", auth.sign_in),
            web.post("/console/sign-out", auth.sign_out),
            web.get("/console/workflows", workflow_pages.workflows),
            web.get("/console/workflows/{workflow_id}", workflow_pages.workflow),
            web.post("/console/workflows/{workflow_id}/runs", workflow_pages.start_run),
            web.get("/console/tests/{test_id}", workflow_pages.test_history),
            web.get("/console/runs", run_pages.runs_list),
            web.get("/console/runs/{run_id}", run_pages.run_page),
            web.get("/console/runs/{run_id}/counts", run_pages.run_counts),
            web.get("/console/runs/{run_id}/events", run_pages.run_events),
            web.get("/console/runs/{run_id}/history", result_pages.history),
            web.post("/console/runs/{run_id}/cancel", run_pages.cancel),
            web.get("/console/results/{result_id}", result_pages.result),
        ]
    )
    app.router.add_static("/console/static", STATIC, name="console_static")
    # Last: after every console route and the static files.
    app.router.add_get("/console/{tail:.*}", auth.not_found)
    app[result_pages.REPLAYS] = result_pages.Replays()
