"""Check the server's answers strictly against the pydantic models of the SDK release
this interpreter imports (0.0.155, or 0.0.160 from its `--target` folder).

    python tests/acceptance/sdk_models.py CAPTURED.json... > REPORT.json

Every workflow, block, saved-test, run and result body (and every item of their
list pages), under either route family, is validated with the release's model; then each
model instance is walked beside the JSON it came from: a field the model
declares that the JSON lacks is `missing` (the SDK would silently read its
default), a key the JSON has that the model does not declare is `undeclared`.
Both are reported as `Model.field`, with one example JSON path each.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys
from typing import Any

from pydantic import BaseModel
from retab.types.workflows.blocks import WorkflowBlock
from retab.types.workflows.model import Workflow

VERSION = importlib.metadata.version("retab")

if VERSION == "0.0.155":
    from retab.types.workflows.tests import WorkflowTest as SavedModel
    from retab.types.workflows.tests.results import WorkflowTestResult as ResultModel
    from retab.types.workflows.tests.runs import WorkflowTestRun as RunModel
else:
    from retab.types.workflows.evals import WorkflowEval as SavedModel  # type: ignore[no-redef]
    from retab.types.workflows.evals.results import (  # type: ignore[no-redef]
        WorkflowEvalResult as ResultModel,
    )
    from retab.types.workflows.evals.runs import (  # type: ignore[no-redef]
        WorkflowEvalRun as RunModel,
    )

_WORKFLOW = re.compile(r"^/v1/workflows/wf_[^/]+$")
_BLOCK = re.compile(r"^/v1/workflows/blocks(/[^/]+)?$")
_ROUTE = re.compile(r"^/v1/workflows/(?:tests|evals)(?P<rest>/.*)?$")


def model_of(method: str, path: str) -> type[BaseModel] | None:
    """The model of a successful answer to (method, path), or None (not a resource answer)."""
    if path == "/v1/workflows" or (_WORKFLOW.match(path) and method != "DELETE"):
        return Workflow
    if _BLOCK.match(path) and method != "DELETE":
        return WorkflowBlock
    match = _ROUTE.match(path)
    if match is None:
        return None
    rest = match.group("rest") or ""
    if rest.startswith("/runs"):
        return None if rest.endswith("/events") else RunModel
    if rest.startswith("/results"):
        return ResultModel
    if method == "DELETE":
        return None
    return SavedModel


def walk(
    instance: Any, raw: Any, where: str, missing: dict[str, str], undeclared: dict[str, str]
) -> None:
    """Compare a validated value with its JSON, recursively."""
    if isinstance(instance, BaseModel):
        assert isinstance(raw, dict), (where, raw)
        name = type(instance).__name__
        declared = set()
        for field_name, field in type(instance).model_fields.items():
            key = field.alias or field_name
            declared.add(key)
            if key not in raw:
                missing.setdefault(f"{name}.{key}", f"{where}.{key}")
            else:
                walk(getattr(instance, field_name), raw[key], f"{where}.{key}", missing, undeclared)
        for key in raw:
            if key not in declared:
                undeclared.setdefault(f"{name}.{key}", f"{where}.{key}")
    elif isinstance(instance, list) and isinstance(raw, list):
        for index, (item, raw_item) in enumerate(zip(instance, raw, strict=True)):
            walk(item, raw_item, f"{where}[{index}]", missing, undeclared)
    elif isinstance(instance, dict) and isinstance(raw, dict):
        for key, value in instance.items():
            walk(value, raw.get(key), f"{where}.{key}", missing, undeclared)


def check(captured: list[dict[str, Any]]) -> dict[str, Any]:
    """The report of these captured answers: what was checked, and what differs."""
    missing: dict[str, str] = {}
    undeclared: dict[str, str] = {}
    checked: dict[str, int] = {}
    for answer in captured:
        model = model_of(answer["method"], answer["path"])
        if model is None or answer["status"] >= 400 or answer["body"] is None:
            continue
        body = answer["body"]
        where = f"{answer['method']} {answer['path']}"
        items = body["data"] if "list_metadata" in body else [body]
        for index, item in enumerate(items):
            # Validation errors name the first field the model refuses.
            instance = model.model_validate(item)
            walk(instance, item, f"{where}#{index}", missing, undeclared)
            checked[model.__name__] = checked.get(model.__name__, 0) + 1
    return {
        "sdk": VERSION,
        "checked": checked,
        "missing": missing,
        "undeclared": undeclared,
    }


if __name__ == "__main__":
    answers: list[dict[str, Any]] = []
    for name in sys.argv[1:]:
        with open(name, encoding="utf-8") as file:
            answers.extend(json.load(file))
    print(json.dumps(check(answers)))
