"""Malformed, odd and oversized requests get a 4xx in the SPEC's format and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import API_KEY, ApiClient

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _stored(client: ApiClient) -> tuple[int, int]:
    from service.http.handlers.common import POOL

    pool = client.http.server.app[POOL]
    return (
        await pool.fetchval("SELECT count(*) FROM workflows"),
        await pool.fetchval("SELECT count(*) FROM events"),
    )


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/workflows", b"[" * 5000 + b"]" * 5000),
        ("/v1/workflows", b'{"name": "a\\u0000b"}'),
        ("/v1/workflows", b'{"name": 1e400}'),
        ("/v1/workflows", b'{"name": "\xc3\x28"}'),
        ("/v1/workflows/tests/runs", b'{"workflow_id": "wf_\\u0000"}'),
        ("/v1/workflows/tests/runs", b'{"workflow_id": "' + b"x" * 5000 + b'"}'),
        (
            "/v1/workflows/blocks",
            b'{"workflow_id": "wf_x", "type": "extract", "position_x": 1e999}',
        ),
    ],
)
async def test_bad_bodies_are_4xx_and_change_nothing(
    client: ApiClient, path: str, raw: bytes
) -> None:
    """Deep nesting, NUL characters, invalid UTF-8, huge numbers and ids are refused cleanly."""
    before = await _stored(client)
    response = await client.http.post(path, data=raw, headers=AUTH)
    assert response.status in (404, 413, 422), await response.text()
    assert "detail" in await response.json()
    assert before == await _stored(client)


async def test_a_nul_inside_handle_data_is_refused(client: ApiClient) -> None:
    """A NUL character deep in a test's handle data is a 422, not a database error."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    body: dict[str, Any] = {
        "workflow_id": workflow["id"],
        "target": {"type": "block", "block_id": block["id"]},
        "source": {"type": "manual", "handle_inputs": {"h": {"type": "json", "data": "a\x00b"}}},
        "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}},
    }
    await client.call("POST", "/v1/workflows/tests", body, expect=422)


@pytest.mark.parametrize(
    "run_id", ["%00", "x" * 300, "wftestrun_'; DROP TABLE events; --", "%E2%80%AE", "..%2F.."]
)
async def test_odd_ids_in_paths_are_404(client: ApiClient, run_id: str) -> None:
    """Ids that cannot exist answer 404 in the SPEC's format."""
    response = await client.http.get(f"/v1/workflows/tests/runs/{run_id}", headers=AUTH)
    assert 404 == response.status
    assert "detail" in await response.json()


async def test_odd_query_values_are_4xx(client: ApiClient) -> None:
    """SQL metacharacters and NULs in filters are data, never SQL, and never a 500."""
    for value in ("' OR 1=1 --", "\x00", "x" * 4000):
        response = await client.http.get(
            "/v1/workflows/tests", params={"workflow_id": value}, headers=AUTH
        )
        assert response.status in (404, 422), await response.text()


async def test_a_body_over_the_limit_is_413(client: ApiClient) -> None:
    """A body larger than MAX_BODY_BYTES is refused with 413 in the SPEC's format."""
    raw = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await client.http.post("/v1/workflows", data=raw, headers=AUTH)
    assert 413 == response.status
    assert "request_too_large" == (await response.json())["detail"]["code"]


async def test_wrong_method_is_405_json(client: ApiClient) -> None:
    """A known path with a method it does not serve is a JSON 405."""
    response = await client.http.put("/v1/workflows/tests/runs", headers=AUTH)
    assert 405 == response.status
    assert "method_not_allowed" == (await response.json())["detail"]["code"]


# Every route that decodes a body, with a valid body (ids need not exist: decoding comes first).
BODY_ROUTES = [
    ("POST", "/v1/workflows", {"name": "n"}),
    ("PATCH", "/v1/workflows/wf_x", {"name": "n"}),
    ("POST", "/v1/workflows/blocks", {"workflow_id": "wf_x", "type": "extract"}),
    ("PATCH", "/v1/workflows/blocks/blk_x", {"label": "l"}),
    (
        "POST",
        "/v1/workflows/tests",
        {
            "workflow_id": "wf_x",
            "target": {"type": "block", "block_id": "blk_x"},
            "source": {"type": "manual", "handle_inputs": {}},
            "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}},
        },
    ),
    ("PATCH", "/v1/workflows/tests/wfnodetest_x", {"name": "n"}),
    ("POST", "/v1/workflows/tests/runs", {"workflow_id": "wf_x"}),
]

# Every route with an id in its path.
ID_ROUTES = [
    ("GET", "/v1/workflows/{}"),
    ("PATCH", "/v1/workflows/{}"),
    ("DELETE", "/v1/workflows/{}"),
    ("GET", "/v1/workflows/blocks/{}"),
    ("PATCH", "/v1/workflows/blocks/{}"),
    ("DELETE", "/v1/workflows/blocks/{}"),
    ("GET", "/v1/workflows/tests/{}"),
    ("PATCH", "/v1/workflows/tests/{}"),
    ("DELETE", "/v1/workflows/tests/{}"),
    ("GET", "/v1/workflows/tests/runs/{}"),
    ("GET", "/v1/workflows/tests/runs/{}/events"),
    ("POST", "/v1/workflows/tests/runs/{}/cancel"),
    ("GET", "/v1/workflows/tests/results/{}"),
]

# Ids no resource has, already percent-encoded as they travel in a path.
ODD_IDS = [
    "x" * 10_000,
    "%00",
    "wf_%00x",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "..%2F..",
    "a%20b",
    "%20",
    "%E2%80%AE%F0%9F%99%82",
    "%E6%BC%A2%E5%AD%97",
    "%C3%28",
    "'%3B%20DROP%20TABLE%20events%3B%20--",
    "%25",
    "_",
    "%5C",
]

# Values that would mean something to SQL (or to LIKE), or to a careless decoder.
SQL_VALUES = [
    "'; DROP TABLE events; --",
    "' OR '1'='1",
    "%",
    "_",
    "\\",
    "wf_%",
    "é漢字🙂\u202e",
    "\x00",
    "x" * 5000,
]


async def _snapshot(client: ApiClient) -> dict[str, list[str]]:
    """Every row of every table, as text: equal snapshots mean nothing changed."""
    from service.http.handlers.common import POOL

    pool = client.http.server.app[POOL]
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
    )
    snapshot = {}
    for (table,) in tables:
        rows = await pool.fetch(f'SELECT t::text AS row FROM "{table}" t')
        snapshot[table] = sorted(row["row"] for row in rows)
    return snapshot


async def _assert_spec_error(response: Any, *statuses: int) -> Any:
    """A 4xx among `statuses`, JSON in the SPEC's format, with a request id."""
    text = await response.text()
    assert response.status in statuses, text
    assert "application/json" == response.content_type, text
    assert response.headers.get("X-Request-Id")
    body = await response.json()
    detail = body["detail"]
    if isinstance(detail, list):
        assert all({"loc", "msg", "type"} <= set(problem) for problem in detail), body
    else:
        assert {"code", "message"} <= set(detail), body
    return body


@pytest.fixture
async def seeded(client: ApiClient) -> dict[str, Any]:
    """A workflow, a block, a saved test and a run: something for a hostile request to harm."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    test = await client.test(workflow["id"], block["id"])
    run = await client.call(
        "POST", "/v1/workflows/tests/runs", {"workflow_id": workflow["id"]}, expect=202
    )
    return {"workflow": workflow, "block": block, "test": test, "run": run}


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES)
async def test_deeply_nested_bodies_are_4xx(
    client: ApiClient, seeded: dict[str, Any], method: str, path: str, body: Any
) -> None:
    """10,000 nested arrays or objects, alone or inside a valid body, are refused cleanly."""
    before = await _snapshot(client)
    arrays = b"[" * 10_000 + b"]" * 10_000
    objects = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    inside = b'{"name": "n", "config": ' + arrays + b', "label": ' + objects + b"}"
    for raw in (arrays, objects, inside):
        response = await client.http.request(method, path, data=raw, headers=AUTH)
        await _assert_spec_error(response, 404, 422)
    assert before == await _snapshot(client)


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES)
async def test_invalid_utf8_bodies_are_422(
    client: ApiClient, seeded: dict[str, Any], method: str, path: str, body: Any
) -> None:
    """A body that is not UTF-8 (in a key, in a value, a lone surrogate) is a 422."""
    before = await _snapshot(client)
    for raw in (b'{"name": "\xff\xfe"}', b'{"\xc3\x28": 1}', b'{"name": "\xed\xa0\x80"}', b"\x80"):
        response = await client.http.request(method, path, data=raw, headers=AUTH)
        body_ = await _assert_spec_error(response, 422)
        assert "body" == body_["detail"][0]["loc"][0]
    assert before == await _snapshot(client)


# For each body: every field with a typed schema and a value of a wrong type for it.
WRONG_TYPES = [
    ("POST", "/v1/workflows", {"name": 1, "description": [], "project_id": {}}),
    ("PATCH", "/v1/workflows/wf_x", {"name": None, "description": 1}),
    (
        "POST",
        "/v1/workflows/blocks",
        {
            "workflow_id": 1,
            "type": ["extract"],
            "id": 2,
            "label": {},
            "position_x": "left",
            "position_y": [],
            "width": "wide",
            "height": {},
            "config": "cfg",
        },
    ),
    (
        "PATCH",
        "/v1/workflows/blocks/blk_x",
        {
            "label": 1,
            "position_x": "x",
            "position_y": True,
            "width": "w",
            "height": [],
            "config": [],
            "config_mode": "overwrite",
        },
    ),
    (
        "POST",
        "/v1/workflows/tests",
        {"workflow_id": 1, "target": "blk", "source": [], "assertion": "exists", "name": 5},
    ),
    ("PATCH", "/v1/workflows/tests/wfnodetest_x", {"name": 5, "assertion": [], "source": 1}),
    ("POST", "/v1/workflows/tests/runs", {"workflow_id": 1, "scope": "all"}),
]


@pytest.mark.parametrize(
    ("method", "path", "field", "value"),
    [
        (method, path, field, value)
        for method, path, fields in WRONG_TYPES
        for field, value in fields.items()
    ],
)
@pytest.mark.usefixtures("seeded")
async def test_a_wrong_type_for_any_field_is_422_at_its_path(
    client: ApiClient, method: str, path: str, field: str, value: Any
) -> None:
    """Each field of each body, given a value of the wrong type, is a 422 naming that field."""
    valid = next(body for m, p, body in BODY_ROUTES if (m, p) == (method, path))
    before = await _snapshot(client)
    response = await client.http.request(method, path, json={**valid, field: value}, headers=AUTH)
    body = await _assert_spec_error(response, 422)
    assert ["body", field] == body["detail"][0]["loc"][:2], body
    assert before == await _snapshot(client)


async def test_unknown_fields_are_ignored(client: ApiClient) -> None:
    """Like the reference API's (FastAPI's) models: an unknown field is ignored, not stored."""
    created = await client.call(
        "POST", "/v1/workflows", {"name": "Invoices", "colour": "red", "id": "wf_mine"}, expect=201
    )
    assert "colour" not in created
    assert "wf_mine" != created["id"]
    updated = await client.call(
        "PATCH", f"/v1/workflows/{created['id']}", {"unknown": [1, 2]}, expect=200
    )
    assert "Invoices" == updated["name"]


@pytest.mark.parametrize(("method", "template"), ID_ROUTES)
async def test_huge_and_odd_ids_in_every_path_are_404(
    client: ApiClient, seeded: dict[str, Any], method: str, template: str
) -> None:
    """10 KB ids, NULs, `../`, spaces, unicode, SQL: a JSON 404 (or 422 for a bad body)."""
    from yarl import URL

    before = await _snapshot(client)
    body = {"name": "n", "label": "l"} if method == "PATCH" else None
    for odd in ODD_IDS:
        url = URL(template.format(odd), encoded=True)
        response = await client.http.request(method, url, json=body, headers=AUTH)
        await _assert_spec_error(response, 404)
    assert before == await _snapshot(client)


# Every list, with its required query and the filters it takes.
LISTS = [
    ("/v1/workflows", {}, []),
    ("/v1/workflows/blocks", {"workflow_id": "workflow"}, ["workflow_id"]),
    ("/v1/workflows/tests", {"workflow_id": "workflow"}, ["workflow_id", "target_block_id"]),
    (
        "/v1/workflows/tests/runs",
        {},
        [
            "workflow_id",
            "test_id",
            "target_block_id",
            "status",
            "exclude_status",
            "trigger_type",
            "from_date",
            "to_date",
            "sort_by",
            "limit",
            "order",
        ],
    ),
    ("/v1/workflows/tests/results", {"run_id": "run"}, ["run_id"]),
    ("/v1/workflows/tests/runs/{run}/events", {}, ["after", "limit"]),
]


@pytest.mark.parametrize(("path", "required", "filters"), LISTS)
async def test_sql_metacharacters_in_every_filter_and_cursor(
    client: ApiClient,
    seeded: dict[str, Any],
    path: str,
    required: dict[str, str],
    filters: list[str],
) -> None:
    """Quotes, LIKE wildcards, backslashes, unicode, NUL: data, never SQL; a 4xx or no match."""
    ids = {
        "workflow": seeded["workflow"]["id"],
        "run": seeded["run"]["id"],
    }
    path = path.format(**ids)
    base = {name: ids[value] for name, value in required.items()}
    before = await _snapshot(client)
    cursors = [] if path.endswith("/events") else ["before", "after"]
    for name in [*filters, *cursors]:
        for value in SQL_VALUES:
            response = await client.http.get(path, params={**base, name: value}, headers=AUTH)
            if response.status == 200:
                # Only a filter that matched nothing, never a wildcard that matched all.
                page = await response.json()
                assert [] == page["data"], (name, value)
            else:
                await _assert_spec_error(response, 400, 404, 422)
    assert before == await _snapshot(client)


async def test_like_wildcards_match_nothing(client: ApiClient, seeded: dict[str, Any]) -> None:
    """`%` and `_` in an id filter are literal: they match no run (the run exists)."""
    runs = await client.call("GET", "/v1/workflows/tests/runs", expect=200)
    assert 1 == len(runs["data"])
    for value in ("%", "_", "wf_%", "%%"):
        page = await client.call("GET", "/v1/workflows/tests/runs", expect=200, workflow_id=value)
        assert [] == page["data"]


async def test_invalid_utf8_in_the_query_string_is_4xx(
    client: ApiClient, seeded: dict[str, Any]
) -> None:
    """Percent-encoded bytes that are not UTF-8, in a filter or a cursor: never a 500."""
    from yarl import URL

    before = await _snapshot(client)
    workflow_id = seeded["workflow"]["id"]
    for query in (
        "workflow_id=%FF%FE",
        "workflow_id=%C3%28&limit=%80",
        "after=%ED%A0%80",
        f"workflow_id={workflow_id}&before=%FF",
        "status=%C0%AF",
    ):
        for path in ("/v1/workflows/tests/runs", "/v1/workflows/tests", "/v1/workflows/blocks"):
            url = URL(f"{path}?{query}", encoded=True)
            response = await client.http.get(url, headers=AUTH)
            if response.status != 200:
                await _assert_spec_error(response, 400, 404, 422)
    assert before == await _snapshot(client)


async def _raw_request(client: ApiClient, head: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client cleans them up); the status and the whole answer."""
    import asyncio

    server = client.http.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(1 << 20), timeout=10)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer


async def test_raw_bytes_in_the_request_line_are_400_and_harmless(client: ApiClient) -> None:
    """Raw non-ASCII bytes in the path or query: aiohttp's parser refuses them with a 400.

    HTTP allows only ASCII in a request target (RFC 9112), so aiohttp's parser
    refuses such a request before the application exists for it, in plain text:
    the answer comes from `RequestHandler.handle_error`, which no middleware
    sees and no setting replaces. The same bytes percent-encoded reach the API
    and get its JSON answers (see `test_invalid_utf8_in_the_query_string_is_4xx`).
    The server goes on serving.
    """
    auth = f"Authorization: Bearer {API_KEY}\r\n".encode()
    for target in (
        b"/v1/workflows/tests/runs/\xff\xfe",
        b"/v1/workflows/tests/runs?workflow_id=\xc3\x28",
    ):
        head = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Connection: close\r\n\r\n"
        status, answer = await _raw_request(client, head)
        assert 400 == status, answer
    await client.call("GET", "/v1/workflows", expect=200)


async def test_long_request_lines_and_headers_up_to_64_kb_get_json(client: ApiClient) -> None:
    """A 10 KB id, query or header value is past aiohttp's 8 KB default: it still gets JSON."""
    response = await client.http.get("/v1/workflows/tests/runs/" + "r" * 10_000, headers=AUTH)
    await _assert_spec_error(response, 404)
    response = await client.http.get(
        "/v1/workflows/tests/runs", params={"workflow_id": "w" * 10_000}, headers=AUTH
    )
    await _assert_spec_error(response, 422)
    response = await client.http.get("/v1/workflows", headers={**AUTH, "X-Anything": "v" * 10_000})
    assert 200 == response.status
    response = await client.http.get("/v1/workflows", headers={"Authorization": "x" * 10_000})
    await _assert_spec_error(response, 401)


async def test_a_request_line_past_64_kb_is_refused_by_the_parser(client: ApiClient) -> None:
    """Past MAX_LINE_BYTES aiohttp's parser answers before any middleware: a plain 4xx.

    aiohttp builds that answer in `RequestHandler.handle_error`, outside the
    application; making it JSON would mean replacing aiohttp's protocol class,
    which it offers no setting for. The limit is 64 KB so that every id, query
    and header a client can mean gets the API's JSON answer.
    """
    from service.http.app import MAX_LINE_BYTES

    head = b"GET /v1/workflows/" + b"x" * (MAX_LINE_BYTES + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, answer = await _raw_request(client, head)
    assert 400 <= status < 500, answer[:200]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/v1/workflows/blocks", "GET,HEAD,POST"),
        ("DELETE", "/v1/workflows/tests", "GET,HEAD,POST"),
        ("PATCH", "/v1/workflows/tests/runs", "GET,HEAD,POST"),
        ("DELETE", "/v1/workflows/tests/results", "GET,HEAD"),
        ("OPTIONS", "/v1/workflows/blocks", "GET,HEAD,POST"),
        ("PUT", "/v1/workflows/wf_x", "DELETE,GET,HEAD,PATCH"),
    ],
)
async def test_a_fixed_path_is_never_taken_for_an_id(
    client: ApiClient, method: str, path: str, allow: str
) -> None:
    """`PATCH /v1/workflows/blocks` is a 405 listing the path's own methods, not a workflow."""
    response = await client.http.request(method, path, headers=AUTH)
    body = await _assert_spec_error(response, 405)
    assert "method_not_allowed" == body["detail"]["code"]
    assert allow == response.headers["Allow"]


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES)
async def test_every_body_over_the_limit_is_413(
    client: ApiClient, seeded: dict[str, Any], method: str, path: str, body: Any
) -> None:
    """Past MAX_BODY_BYTES, with a Content-Length or chunked, every body route answers 413."""
    from service.config import Config

    limit = Config().max_body_bytes
    before = await _snapshot(client)
    raw = b'{"name": "' + b"x" * limit + b'"}'

    async def chunks() -> Any:
        for start in range(0, len(raw), 65536):
            yield raw[start : start + 65536]

    for data in (raw, chunks()):
        response = await client.http.request(method, path, data=data, headers=AUTH)
        error = await _assert_spec_error(response, 413)
        assert "request_too_large" == error["detail"]["code"]
    assert before == await _snapshot(client)
