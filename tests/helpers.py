"""Helpers shared by the tests: API keys of two organisations and a small JSON client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

API_KEY = "rtk_test_key_organisation_a"
OTHER_API_KEY = "rtk_test_key_organisation_b"


class ApiClient:
    """A thin JSON client for the API tests, authenticated as organisation A by default."""

    def __init__(self, http: Any) -> None:
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = API_KEY,
        header: str = "bearer",
        expect: int | None = None,
        **params: Any,
    ) -> Any:
        headers = {}
        if key is not None:
            headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"Api-Key": key}
        response = await self.http.request(
            method, path, json=body, headers=headers, params=params or None
        )
        self.last = response
        payload = await response.json() if response.content_type == "application/json" else None
        if expect is not None:
            assert expect == response.status, payload
        return payload

    async def workflow(self, name: str = "Invoices") -> dict[str, Any]:
        return await self.call("POST", "/v1/workflows", {"name": name}, expect=201)

    async def block(self, workflow_id: str, **fields: Any) -> dict[str, Any]:
        body = {"workflow_id": workflow_id, "type": "extract", **fields}
        return await self.call("POST", "/v1/workflows/blocks", body, expect=201)

    async def test(self, workflow_id: str, block_id: str, **fields: Any) -> dict[str, Any]:
        body = {
            "workflow_id": workflow_id,
            "target": {"type": "block", "block_id": block_id},
            "source": {
                "type": "manual",
                "handle_inputs": {"input-json-0": {"type": "json", "data": {"n": 1}}},
            },
            "assertion": {
                "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
                "condition": {"kind": "equals", "expected": "ACME"},
            },
            **fields,
        }
        return await self.call("POST", "/v1/workflows/tests", body, expect=201)


ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    """Run one of scripts/ on a database, with this virtual environment; capture its output."""
    env = {**os.environ, "DATABASE_URL": database_url, "VENV": str(Path(sys.prefix))}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
