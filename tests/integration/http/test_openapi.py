"""The OpenAPI document: valid 3.1, exactly the served routes, and real answers match it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from projections.asynchronous import catch_up
from projections.summaries import LatestRunSummaries
from service.config import Config
from service.execution.runner import Runner
from service.http.handlers.common import POOL
from service.http.openapi import UndocumentedRouteError, is_console, openapi_document
from service.http.routes import add_routes
from tests.helpers import API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"
RESULTS = "/v1/workflows/tests/results"
DOCUMENT_URI = "urn:test:openapi"
SERVICE_PATHS = {"/healthz", "/readyz", "/openapi.json", "/docs"}

# SPEC.md's fields of a test run (the seed pages and the schema, both forms).
SPEC_RUN_FIELDS = {
    "id", "workflow_id", "workflow_version_id", "workflow", "trigger", "lifecycle", "timing",
    "test_id", "target", "total_tests", "counts", "freshness",
}  # fmt: skip
SPEC_COUNT_FIELDS = {
    "lifecycle_counts", "outcome",
    "queued", "running", "passed", "failed", "blocked", "error", "cancelled",
}  # fmt: skip


async def _document(client: ApiClient) -> dict[str, Any]:
    document: dict[str, Any] = await client.call("GET", "/openapi.json", key=None, expect=200)
    return document


def _app(client: ApiClient) -> web.Application:
    app: web.Application = client.http.server.app
    return app


def _served(app: web.Application) -> set[tuple[str, str]]:
    """What the router serves, as (method, path); aiohttp's automatic HEADs left out."""
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        # The web console's pages are HTML for people: not operations of the API.
        and not is_console(route.resource.canonical)
    }


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _resolve_pointer(document: dict[str, Any], ref: str) -> Any:
    """The value a local `$ref` (`#/a/b`) points at; KeyError if it points nowhere."""
    node: Any = document
    for raw in ref.removeprefix("#/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _schema(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its `$ref` followed."""
    while "$ref" in schema:
        schema = _resolve_pointer(document, schema["$ref"])
    return schema


def _alternatives(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-union schema a (nested) `anyOf` allows, refs followed."""
    schema = _schema(document, schema)
    if "anyOf" not in schema:
        return [schema]
    return [alt for item in schema["anyOf"] for alt in _alternatives(document, item)]


def _tags(document: dict[str, Any], schema: dict[str, Any], field: str) -> set[str]:
    """The tag values of a tagged union: each alternative's single `enum` value of `field`."""
    return {
        alt["properties"][field]["enum"][0]
        for alt in _alternatives(document, schema)
        if alt.get("type") == "object"
    }


class Answers:
    """Checks real response bodies against the document's schema for (method, path, status)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        self.checked: list[tuple[str, str, int]] = []

    def problems(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Why `body` does not match the documented answer ([] when it does)."""
        responses = self.document["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path} does not document {status}"
        pointer = _pointer(
            "paths", path, method.lower(), "responses", str(status), "content", "application/json"
        )
        validator = Draft202012Validator(
            {"$ref": f"{DOCUMENT_URI}#/{pointer}/schema"}, registry=self.registry
        )
        self.checked.append((method, path, status))
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


@asynccontextmanager
async def _running(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """An in-process runner, so results reach their richest shape (outputs, failures)."""
    stop = asyncio.Event()
    config = Config(function_modules=frozenset({"tests.run_functions"}), retry_backoff_s=0.05)
    task = asyncio.create_task(Runner(pool, config).run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def _finished(client: ApiClient, run_id: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        run: dict[str, Any] = await client.call("GET", f"{RUNS}/{run_id}", expect=200)
        if run["lifecycle"]["status"] in ("completed", "cancelled", "error"):
            return run
        if loop.time() > deadline:
            pytest.fail(f"run {run_id} did not finish: {run['lifecycle']}")
        await asyncio.sleep(0.02)


async def _summarised(client: ApiClient, test_id: str) -> None:
    """Wait until the test's latest run summary is projected.

    The follower reads in commit order: it waits while any older transaction on
    the server is still open, so it may take a few rounds.
    """
    pool = client.http.server.app[POOL]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        await catch_up(pool, LatestRunSummaries())
        test = await client.call("GET", f"/v1/workflows/tests/{test_id}", expect=200)
        if test["latest_run_summary"] is not None:
            return
        if loop.time() > deadline:
            pytest.fail(f"no run summary for saved test {test_id}")
        await asyncio.sleep(0.05)


async def test_the_document_is_valid_openapi_3_1(client: ApiClient) -> None:
    """`/openapi.json` answers without an API key and passes the OpenAPI 3.1 validator."""
    document = await _document(client)
    assert "3.1.0" == document["openapi"]
    validate(document, cls=OpenAPIV31SpecValidator)


async def test_the_document_lists_exactly_the_served_routes(client: ApiClient) -> None:
    """Every route the router serves is documented, and nothing else is."""
    document = await _document(client)
    served = _served(_app(client))
    assert served == _documented(document)
    assert {("get", path) for path in SERVICE_PATHS} <= served
    assert not [path for path in document["paths"] if is_console(path)]
    operation_ids = [
        op["operationId"] for item in document["paths"].values() for op in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


async def test_the_document_is_generated_once_per_app(client: ApiClient) -> None:
    """The started app's document is cached: the same object every time."""
    app = _app(client)
    assert openapi_document(app) is openapi_document(app)


async def test_an_undocumented_api_route_fails_generation() -> None:
    """A `/v1` route with no entry in the table is an error that names it, not a silent gap."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    add_routes(app)
    app.router.add_get("/v1/workflows/{workflow_id}/secrets", handler)
    with pytest.raises(UndocumentedRouteError, match=r"GET /v1/workflows/\{workflow_id\}/secrets"):
        openapi_document(app)


async def test_an_unknown_route_outside_the_api_is_documented_as_plain_text() -> None:
    """An operator's route outside `/v1` gets a plain-text 200 and needs no key."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    add_routes(app)
    app.router.add_get("/internal/stats", handler)
    operation = openapi_document(app)["paths"]["/internal/stats"]["get"]
    assert {"text/plain": {"schema": {"type": "string"}}} == operation["responses"]["200"][
        "content"
    ]
    assert [] == operation["security"]


async def test_every_ref_resolves(client: ApiClient) -> None:
    """Every `$ref` in the document points at something in the document."""
    document = await _document(client)
    refs = set(_refs(document))
    unresolved = set()
    for ref in refs:
        try:
            _resolve_pointer(document, ref)
        except (KeyError, IndexError, ValueError):
            unresolved.add(ref)
    assert set() == unresolved
    assert "#/components/schemas/WorkflowTestRun" in refs


async def test_api_operations_need_a_key_and_service_routes_do_not(client: ApiClient) -> None:
    """Every `/v1` operation accepts a bearer token or an `Api-Key` and documents 401."""
    document = await _document(client)
    schemes = document["components"]["securitySchemes"]
    assert {"type": "http", "scheme": "bearer"}.items() <= schemes["bearerAuth"].items()
    assert {"type": "apiKey", "in": "header", "name": "Api-Key"}.items() <= schemes[
        "apiKeyAuth"
    ].items()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/v1/"):
                assert [{"bearerAuth": []}, {"apiKeyAuth": []}] == operation["security"], path
                assert "401" in operation["responses"], (method, path)
            else:
                assert [] == operation["security"], path


async def test_lists_document_pagination_filters_and_errors(client: ApiClient) -> None:
    """Every list takes the cursors, `limit` 1..100 and `order`, and documents 400 and 422."""
    document = await _document(client)
    required = {
        "/v1/workflows": set(),
        "/v1/workflows/blocks": {"workflow_id"},
        "/v1/workflows/tests": {"workflow_id"},
        "/v1/workflows/tests/runs": set(),
        "/v1/workflows/tests/results": {"run_id"},
    }
    for path, names in required.items():
        operation = document["paths"][path]["get"]
        parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert {"before", "after", "limit", "order"} <= set(parameters), path
        assert {"type": "integer", "minimum": 1, "maximum": 100, "default": 20} == parameters[
            "limit"
        ]["schema"]
        assert ["asc", "desc"] == parameters["order"]["schema"]["enum"]
        assert names == {name for name, p in parameters.items() if p["required"]}, path
        assert {"400", "401", "422"} <= set(operation["responses"]), path
        assert (
            "#/components/schemas/ValidationErrorResponse"
            == (operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"])
        )
    runs_list = document["paths"][RUNS]["get"]["parameters"]
    assert {
        "workflow_id", "test_id", "target_block_id", "status", "exclude_status", "trigger_type",
        "from_date", "to_date", "sort_by",
    } <= {p["name"] for p in runs_list}  # fmt: skip


async def test_the_run_request_schema_has_the_spec_fields(client: ApiClient) -> None:
    """`POST /v1/workflows/tests/runs` takes `workflow_id` and the three scopes, or null."""
    document = await _document(client)
    operation = document["paths"][RUNS]["post"]
    body = _schema(document, operation["requestBody"]["content"]["application/json"]["schema"])
    assert {"workflow_id", "scope"} == set(body["properties"])
    assert ["workflow_id"] == body["required"]
    assert {"workflow", "single", "block"} == _tags(document, body["properties"]["scope"], "type")
    assert {"type": "null"} in _alternatives(document, body["properties"]["scope"])
    assert {"202", "401", "404", "409", "422"} <= set(operation["responses"])


async def test_the_run_response_schema_has_the_spec_fields(client: ApiClient) -> None:
    """`GET /v1/workflows/tests/runs/{run_id}` answers every field SPEC.md lists, both forms."""
    document = await _document(client)
    operation = document["paths"][f"{RUNS}/{{run_id}}"]["get"]
    run = _schema(document, operation["responses"]["200"]["content"]["application/json"]["schema"])
    properties = run["properties"]
    assert SPEC_RUN_FIELDS <= set(properties)
    assert {"workflow_id", "version_id"} <= set(
        _schema(document, properties["workflow"])["properties"]
    )
    assert {"created_at", "started_at", "completed_at", "duration_ms"} <= set(
        _schema(document, properties["timing"])["properties"]
    )
    counts = _schema(document, properties["counts"])["properties"]
    assert SPEC_COUNT_FIELDS <= set(counts)
    assert {"pending", "queued", "running", "completed", "error", "cancelled"} <= set(
        _schema(document, counts["lifecycle_counts"])["properties"]
    )
    assert {"passed", "failed", "blocked"} <= set(
        _schema(document, counts["outcome"])["properties"]
    )
    assert {"pending", "queued", "running", "completed", "error", "cancelled"} == _tags(
        document, properties["lifecycle"], "status"
    )
    freshness = [
        alt for alt in _alternatives(document, properties["freshness"]) if "properties" in alt
    ]
    assert {
        "status", "reasons", "validity_fingerprint", "input_fingerprint", "baseline_run_id"
    } <= set(freshness[0]["properties"])  # fmt: skip
    assert {"200", "401", "404"} <= set(operation["responses"])


async def test_docs_is_a_self_contained_page_of_the_document(client: ApiClient) -> None:
    """`/docs` is HTML that fetches `/openapi.json` and loads nothing from elsewhere."""
    response = await client.http.get("/docs")
    html = await response.text()
    assert 200 == response.status
    assert "text/html" == response.content_type
    assert "/openapi.json" in html
    assert "<script>" in html
    assert "src=" not in html
    assert "http://" not in html
    assert "https://" not in html


async def test_real_answers_match_the_documented_schemas(client: ApiClient) -> None:
    """Workflows, blocks, tests, runs and results as the API answers them validate."""
    answers = Answers(await _document(client))

    async def call(
        method: str, route: str, path: str, status: int, body: Any = None, **q: Any
    ) -> Any:
        payload = await client.call(method, path, body, expect=status, **q)
        if status == 204:
            assert (
                "content"
                not in answers.document["paths"][route][method.lower()]["responses"]["204"]
            )
        else:
            assert [] == answers.problems(method, route, status, payload)
        return payload

    workflow = await call("POST", "/v1/workflows", "/v1/workflows", 201, {"name": "Invoices"})
    wf = workflow["id"]
    await call("GET", "/v1/workflows", "/v1/workflows", 200)
    await call("GET", "/v1/workflows/{workflow_id}", f"/v1/workflows/{wf}", 200)
    await call(
        "PATCH", "/v1/workflows/{workflow_id}", f"/v1/workflows/{wf}", 200, {"description": "d"}
    )
    block = await call(
        "POST",
        "/v1/workflows/blocks",
        "/v1/workflows/blocks",
        201,
        {
            "workflow_id": wf,
            "type": "function",
            "config": {"entrypoint": "tests.run_functions:invoice"},
        },
    )
    extract = await client.block(wf, id="block_extract")
    await call("GET", "/v1/workflows/blocks", "/v1/workflows/blocks", 200, workflow_id=wf)
    await call(
        "PATCH",
        "/v1/workflows/blocks/{block_id}",
        f"/v1/workflows/blocks/{extract['id']}",
        200,
        {"label": "Extract"},
    )
    passing = {
        "workflow_id": wf,
        "target": {"type": "block", "block_id": block["id"]},
        "source": {
            "type": "manual",
            "handle_inputs": {"input": {"type": "json", "data": {"name": "ACME"}}},
        },
        "assertion": {
            "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
            "condition": {"kind": "equals", "expected": "ACME"},
        },
        "name": "vendor",
    }
    test = await call("POST", "/v1/workflows/tests", "/v1/workflows/tests", 201, passing)
    # A block with no runtime configured: a `blocked` result with a failure.
    await client.test(wf, extract["id"])
    await call("GET", "/v1/workflows/tests", "/v1/workflows/tests", 200, workflow_id=wf)
    await call(
        "PATCH", "/v1/workflows/tests/{test_id}", f"/v1/workflows/tests/{test['id']}", 200,
        {"name": "vendor name"},
    )  # fmt: skip
    created = await call("POST", RUNS, RUNS, 202, {"workflow_id": wf})
    pool = client.http.server.app[POOL]
    async with _running(pool):
        await _finished(client, created["id"])
    run = await call("GET", f"{RUNS}/{{run_id}}", f"{RUNS}/{created['id']}", 200)
    assert "completed" == run["lifecycle"]["status"]
    # The check is not vacuous: a run with a wrongly typed field does not validate.
    assert [] != answers.problems("GET", f"{RUNS}/{{run_id}}", 200, run | {"total_tests": "2"})
    await call("GET", RUNS, RUNS, 200, workflow_id=wf)
    page = await call("GET", RESULTS, RESULTS, 200, run_id=created["id"])
    assert {"passed", "blocked"} == {result["verdict"] for result in page["data"]}
    for result in page["data"]:
        await call("GET", f"{RESULTS}/{{result_id}}", f"{RESULTS}/{result['id']}", 200)
    # The saved test now has run summaries (an asynchronous projection) and a freshness.
    await _summarised(client, test["id"])
    await call("GET", "/v1/workflows/tests/{test_id}", f"/v1/workflows/tests/{test['id']}", 200)
    # A run cancelled while pending.
    pending = await call("POST", RUNS, RUNS, 202, {"workflow_id": wf})
    await call("POST", f"{RUNS}/{{run_id}}/cancel", f"{RUNS}/{pending['id']}/cancel", 200)
    await call("DELETE", "/v1/workflows/tests/{test_id}", f"/v1/workflows/tests/{test['id']}", 204)
    await call(
        "DELETE", "/v1/workflows/blocks/{block_id}", f"/v1/workflows/blocks/{extract['id']}", 204
    )
    await call("DELETE", "/v1/workflows/{workflow_id}", f"/v1/workflows/{wf}", 204)
    await call("GET", "/healthz", "/healthz", 200)
    await call("GET", "/readyz", "/readyz", 200)
    assert 20 <= len(answers.checked)


async def test_real_error_answers_match_the_documented_schemas(client: ApiClient) -> None:
    """401, 400, 404, 409 and 422 bodies validate against what each operation documents."""
    answers = Answers(await _document(client))
    workflow = await client.workflow()

    unauthorised = await client.call("GET", RUNS, key=None, expect=401)
    assert [] == answers.problems("GET", RUNS, 401, unauthorised)
    both_cursors = await client.call("GET", RUNS, expect=400, before="x", after="y")
    assert [] == answers.problems("GET", RUNS, 400, both_cursors)
    unknown = await client.call("GET", f"{RUNS}/wftestrun_nope", expect=404)
    assert [] == answers.problems("GET", f"{RUNS}/{{run_id}}", 404, unknown)
    assert "run_not_found" == unknown["detail"]["code"]
    invalid = await client.call("POST", RUNS, {"scope": {"type": "single"}}, expect=422)
    assert [] == answers.problems("POST", RUNS, 422, invalid)
    missing = await client.call("GET", RESULTS, expect=422)
    assert [] == answers.problems("GET", RESULTS, 422, missing)
    await client.block(workflow["id"], id="block_taken")
    taken = await client.call(
        "POST",
        "/v1/workflows/blocks",
        {"workflow_id": workflow["id"], "type": "extract", "id": "block_taken"},
        expect=409,
    )
    assert [] == answers.problems("POST", "/v1/workflows/blocks", 409, taken)
    assert "block_id_conflict" == taken["detail"]["code"]
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "openapi-test"}
    first = await client.http.post("/v1/workflows", json={"name": "a"}, headers=headers)
    assert 201 == first.status
    reused = await client.http.post("/v1/workflows", json={"name": "b"}, headers=headers)
    assert 409 == reused.status
    assert [] == answers.problems("POST", "/v1/workflows", 409, await reused.json())


async def test_both_route_families_are_documented_alike(client: ApiClient) -> None:
    """Every `/v1/workflows/tests...` operation has its `/v1/workflows/evals...` twin (with
    `{eval_id}` for `{test_id}`), the same bodies, answers and query parameters plus the
    runs list's `eval_id`; the resources document both releases' names."""
    document = await _document(client)
    paths = document["paths"]
    twins = 0
    for path, operations in paths.items():
        if not path.startswith("/v1/workflows/tests"):
            continue
        twin = path.replace("/v1/workflows/tests", "/v1/workflows/evals").replace(
            "{test_id}", "{eval_id}"
        )
        assert set(operations) == set(paths[twin]), twin
        for method, operation in operations.items():
            other = paths[twin][method]
            twins += 1
            assert "evals" in other["tags"]
            assert operation["responses"] == other["responses"], (method, twin)
            assert operation.get("requestBody") == other.get("requestBody"), (method, twin)
            names = {p["name"] for p in operation.get("parameters", [])}
            twin_names = {p["name"] for p in other.get("parameters", [])}
            assert {n.replace("test_id", "eval_id") for n in names} | names >= twin_names
    assert 12 == twins
    runs_list = {p["name"] for p in paths["/v1/workflows/evals/runs"]["get"]["parameters"]}
    assert {"test_id", "eval_id"} <= runs_list
    run_schema = paths["/v1/workflows/evals/runs/{run_id}"]["get"]["responses"]["200"]
    run = _schema(document, run_schema["content"]["application/json"]["schema"])
    assert {"test_id", "eval_id", "total_tests", "total_evals"} <= set(run["properties"])
    result_schema = paths["/v1/workflows/evals/results/{result_id}"]["get"]["responses"]["200"]
    result = _schema(document, result_schema["content"]["application/json"]["schema"])
    assert {
        "test_id", "eval_id", "workflow_test_run_id", "workflow_eval_run_id",
        "block_config_fingerprint", "block_execution_fingerprint",
    } <= set(result["properties"])  # fmt: skip
    single = _schema(document, {"$ref": "#/components/schemas/SingleScope"})
    assert {"test_id", "eval_id"} <= set(single["properties"])
    saved = _schema(document, {"$ref": "#/components/schemas/WorkflowTest"})
    assert {"validation_status", "validation_issues"} <= set(saved["properties"])
