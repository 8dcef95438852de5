"""Expected against actual, line by line, for the result page."""

from __future__ import annotations

import difflib
import json
from typing import Any, NamedTuple


class DiffLine(NamedTuple):
    """One line of the diff: `kind` is `same`, `expected` (only there) or `actual`."""

    kind: str
    text: str


def _lines(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def diffable(expected: Any, actual: Any) -> bool:
    """A diff helps for objects and arrays; scalars read better side by side."""
    return isinstance(expected, dict | list) or isinstance(actual, dict | list)


def json_diff(expected: Any, actual: Any) -> list[DiffLine]:
    """Both values as indented JSON (keys sorted), every line marked by where it is."""
    left, right = _lines(expected), _lines(actual)
    out: list[DiffLine] = []
    matcher = difflib.SequenceMatcher(a=left, b=right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.extend(DiffLine("same", line) for line in left[i1:i2])
            continue
        out.extend(DiffLine("expected", line) for line in left[i1:i2])
        out.extend(DiffLine("actual", line) for line in right[j1:j2])
    return out
