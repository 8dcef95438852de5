"""Fingerprints: what a test tests, hashed, so freshness can compare it with the draft."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

_encode = msgspec.json.Encoder(order="sorted").encode


def fingerprint(value: Any) -> str:
    """A stable hash of a JSON value (keys sorted): `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(_encode(value)).hexdigest()


def block_config(block_type: str, config: Any) -> str:
    """What the block would execute."""
    return fingerprint({"type": block_type, "config": config})


def handle_inputs(inputs: Any) -> str:
    """What the test feeds the block."""
    return fingerprint(inputs)


def validity(assertion: dict[str, Any]) -> str:
    """What the test checks: the assertion's target and condition (not its label or id)."""
    return fingerprint({"target": assertion.get("target"), "condition": assertion.get("condition")})


def execution(block_fp: str, inputs_fp: str, validity_fp: str) -> str:
    """The whole of one test's execution."""
    return fingerprint([block_fp, inputs_fp, validity_fp])


def combined(pairs: Iterable[tuple[str, str]]) -> str:
    """An order-independent fingerprint of (id, fingerprint) pairs."""
    return fingerprint(sorted(pairs))
