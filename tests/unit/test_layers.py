"""The layering that import-linter cannot state: only `service/http` knows HTTP's server side.

import-linter (run by scripts/test, contracts in pyproject.toml) checks the
arrows between our own packages; it cannot forbid a subpackage of an external
one (`aiohttp.web`, as opposed to the aiohttp client the executors use). This
test reads every module's imports instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_SIDE = ("aiohttp.web", "aiohttp.web_", "aiohttp.hdrs")
# The composition root starts the server; only it, besides service/http, may.
ALLOWED = {ROOT / "service" / "__main__.py"}


def _server_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(SERVER_SIDE)]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [f"{node.module}.{a.name}" for a in node.names]
            found += [n for n in [node.module, *names] if n.startswith(SERVER_SIDE)]
    return found


def test_only_the_http_package_imports_aiohttp_server_side() -> None:
    offenders = {
        str(path.relative_to(ROOT)): imports
        for package in ("events", "projections", "service")
        for path in sorted((ROOT / package).rglob("*.py"))
        if (ROOT / "service" / "http") not in path.parents and path not in ALLOWED
        if (imports := _server_imports(path))
    }
    assert {} == offenders


def test_the_check_sees_a_server_side_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from aiohttp import web, ClientSession\nimport aiohttp.web_request\n")
    assert ["aiohttp.web", "aiohttp.web_request"] == sorted(set(_server_imports(module)))
