"""`testrun` and the demo are HTTP clients: they import nothing of the server side."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"
CLIENT_MODULES = [
    *sorted((SERVICE / "testrun").glob("*.py")),
    SERVICE / "ops" / "demo.py",
    SERVICE / "ops" / "demo_blocks.py",
]
ALLOWED_THIRD_PARTY = {"aiohttp", "msgspec"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_clients_import_only_the_stdlib_aiohttp_msgspec_and_testrun() -> None:
    """Everything they import is the standard library, aiohttp, msgspec or service.testrun."""
    wrong = {
        f"{path.relative_to(SERVICE.parent)}: {name}"
        for path in CLIENT_MODULES
        for name in _imports(path)
        if name != "__future__"
        and name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ALLOWED_THIRD_PARTY
        and not (name == "service.testrun" or name.startswith("service.testrun."))
    }
    assert set() == wrong
    assert len(CLIENT_MODULES) >= 7
