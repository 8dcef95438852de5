"""Logs never carry a key, a secret or a payload: only size-capped summaries."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.logging import _SECRET_TEXT, MAX_CHARS, REDACTED, redact, scrub, stdlib_handler
from tests.acceptance.conftest import free_port
from tests.helpers import ROOT


def test_the_processor_masks_secret_fields_and_text_and_caps_sizes() -> None:
    """Defence in depth, whatever a log call passes."""
    event = redact(
        None,
        "info",
        {
            "event": "x",
            "headers": {"Authorization": "Bearer zz-secret-1", "Accept": "*/*"},
            "api_key": "zz-secret-2",
            "api_key_id": "key_1",
            "password": "zz-secret-3",
            "database_url": "postgresql://u:zz-secret-4@h/db",
            "error": "connect to postgresql://u:zz-secret-5@h/db failed; "
            + "Api-Key: zz-secret-6; Bearer zz-secret-7 "
            + "x" * 5000,
            "payload": b"\x00" * 100,
            "items": list(range(100)),
            "nested": {"a": {"b": {"c": {"token": "zz-secret-8"}}}},
        },
    )
    rendered = json.dumps(event)
    assert "zz-secret" not in rendered
    assert "*/*" == event["headers"]["Accept"]
    assert "key_1" == event["api_key_id"]
    assert REDACTED == event["api_key"]
    assert len(event["error"]) < 1100
    assert "more characters" in event["error"]
    assert "<100 bytes>" == event["payload"]
    assert 21 == len(event["items"])


# Text near the secret patterns: their words and separators in any case, and noise.
_NEAR_SECRETS = st.lists(
    st.sampled_from(
        ["bearer", "Basic", "AUTHORIZATION", "api-key", "Api_Key", "x-api-key", "apikey",
         "password", "PASSWD", "secret", "token", "Cookie", "rtk_", "RTK_", "rtk_ab-1",
         "://", "postgresql://u:", "@h/db", " ", "  ", ":", "=", "'", '"', ";", ",", "&",
         "zz", "x1", "é", "\u017fecret", "\u212aey", "api-\u212aey"]
    ) | st.text(max_size=4),
    max_size=12,
).map("".join)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(_NEAR_SECRETS)
@example("\u017fecret=zz")  # a long s: `(?i)secret` matches it, `secret` does not
@example("X-Api-\u212aey: zz")  # a Kelvin sign, which is a K case-insensitively
def test_scrub_masks_what_every_pattern_masks(text: str) -> None:
    """The one-search shortcut for plain text never skips a mask."""
    expected = text
    for pattern, replacement in _SECRET_TEXT:
        expected = pattern.sub(replacement, expected)
    if len(expected) > MAX_CHARS:
        expected = f"{expected[:MAX_CHARS]}... ({len(expected) - MAX_CHARS} more characters)"
    assert scrub(text) == expected


def test_standard_library_lines_are_redacted_too() -> None:
    """aiohttp's own error lines (a malformed header, say) go through the same processors."""
    stream = io.StringIO()
    logger = logging.getLogger("test_logs.stdlib")
    handler = stdlib_handler("json", stream)
    logger.addHandler(handler)
    try:
        logger.error("Error handling request: b'Authorization: Bearer s3cr3t-canary'")
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert "error" == line["level"]
    assert "s3cr3t-canary" not in stream.getvalue()
    assert "Authorization" in line["event"]


async def _wait_ready(base: str, process: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            assert process.returncode is None, "the server exited"
            try:
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    msg = "the server did not start"
    raise AssertionError(msg)


async def test_a_canary_in_keys_secrets_headers_and_payloads_never_reaches_the_logs(
    database_url: str, aiohttp_server_factory: Any, tmp_path: Path
) -> None:
    """A live server, a run through an api_call block: its stdout and stderr hold no canary."""
    canary = f"canary{uuid.uuid4().hex}"
    key = f"key-{canary}"

    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        if request.path.endswith("fail"):
            return web.Response(status=500, text=f"upstream says {canary}")
        return web.json_response({"vendor": {"name": body["input"]["text"]}})

    target = await aiohttp_server_factory("/{tail:.*}", echo)
    password_url = database_url.replace("postgres@", f"postgres:{canary}@", 1)
    assert canary in password_url
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    output = tmp_path / "server.log"
    env = {
        **os.environ,
        "DATABASE_URL": password_url,
        "BOOTSTRAP_API_KEY": key,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "debug",
        "ALLOWED_OUTBOUND_HOSTS": "127.0.0.1",
        "TEST_TIMEOUT_S": "5",
    }
    with output.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "serve",
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        await _wait_ready(base, process)
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(base_url=base) as http:
            for headers in (
                {"Authorization": f"Bearer wrong-{canary}"},
                {"Api-Key": f"wrong-{canary}"},
                {"Cookie": f"session={canary}"},
            ):
                async with http.get("/v1/workflows", headers=headers) as response:
                    assert 401 == response.status
            async with http.post(
                "/v1/workflows", data=f'{{"name": {canary}', headers=auth
            ) as response:
                assert 422 == response.status
            async with http.post("/v1/workflows", json={"name": "w"}, headers=auth) as response:
                workflow = (await response.json())["id"]
            tests = []
            for path in ("ok", "fail"):
                config = {
                    "url": f"{target}/{path}?token={canary}",
                    "headers": {"Authorization": f"Bearer {canary}", "X-Api-Key": canary},
                }
                block_body = {"workflow_id": workflow, "type": "api_call", "config": config}
                async with http.post(
                    "/v1/workflows/blocks", json=block_body, headers=auth
                ) as response:
                    block = (await response.json())["id"]
                test_body = {
                    "workflow_id": workflow,
                    "target": {"type": "block", "block_id": block},
                    "source": {
                        "type": "manual",
                        "handle_inputs": {"input": {"type": "json", "data": {"text": canary}}},
                    },
                    "assertion": {
                        "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
                        "condition": {"kind": "equals", "expected": canary},
                    },
                }
                async with http.post("/v1/workflows/tests", json=test_body, headers=auth) as r:
                    assert 201 == r.status
                    tests.append((await r.json())["id"])
            async with http.post(
                "/v1/workflows/tests/runs", json={"workflow_id": workflow}, headers=auth
            ) as response:
                run = await response.json()
            for _ in range(300):
                async with http.get(f"/v1/workflows/tests/runs/{run['id']}", headers=auth) as r:
                    run = await r.json()
                if run["lifecycle"]["status"] == "completed":
                    break
                await asyncio.sleep(0.1)
            assert {"passed": 1, "failed": 0, "blocked": 1} == run["counts"]["outcome"]
            async with http.get(
                "/v1/workflows/tests/results", params={"run_id": run["id"]}, headers=auth
            ) as response:
                # The payload went through (it is in the results, where it belongs).
                assert canary in await response.text()
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)
    logs = output.read_text()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    finished = [line for line in lines if line.get("event") == "request_finished"]
    # The logs are there (this test can fail): every request, the runner, the shutdown.
    assert len(finished) >= 10, logs[-2000:]
    assert {401, 422, 201, 202, 200} <= {line["status"] for line in finished}
    assert "/v1/workflows/tests/runs/{run_id}" in {line["route"] for line in finished}
    assert any(line.get("event") == "runner_started" for line in lines)
    assert canary not in logs
