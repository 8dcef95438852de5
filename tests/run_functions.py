"""Callables that the `function` blocks of the execution tests call (tests.run_functions)."""

from __future__ import annotations

import asyncio
import time
from typing import Any


def _data(inputs: dict[str, Any]) -> dict[str, Any]:
    value = inputs.get("input")
    return value if isinstance(value, dict) else {}


def invoice(inputs: dict[str, Any]) -> dict[str, Any]:
    """An "extraction": the vendor named in the `input` handle, and a total."""
    data = _data(inputs)
    return {"output-json-0": {"vendor": {"name": data.get("name")}, "total": data.get("total", 0)}}


async def slow_invoice(inputs: dict[str, Any]) -> dict[str, Any]:
    """The same, after `delay` seconds (async)."""
    await asyncio.sleep(float(_data(inputs).get("delay", 0.05)))
    return invoice(inputs)


def sleepy(inputs: dict[str, Any]) -> dict[str, Any]:
    """The same, after `delay` seconds (sync: it must run off the event loop)."""
    time.sleep(float(_data(inputs).get("delay", 0.05)))
    return invoice(inputs)


def noop(inputs: dict[str, Any]) -> dict[str, Any]:
    """Nothing at all, as fast as possible."""
    return {"output-json-0": True}


def broken(inputs: dict[str, Any]) -> dict[str, Any]:
    """A block that fails."""
    msg = "the model is not reachable"
    raise RuntimeError(msg)
