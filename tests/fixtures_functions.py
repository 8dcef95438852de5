"""Sample callables for `function` blocks, used by the executor tests.

Entrypoints look like `tests.fixtures_functions:echo`.
"""

from __future__ import annotations

import asyncio
import os  # reached through this module by a test: `...:os.system` must be refused
import time
from datetime import UTC, datetime
from os import getcwd  # idem: a function imported from a module that is not allowed
from typing import Any

__all__ = ["getcwd", "os"]

NOT_CALLABLE = 42


def echo(inputs: dict[str, Any]) -> dict[str, Any]:
    """Answer the inputs as the output handle `echo`."""
    return {"echo": inputs}


async def async_echo(inputs: dict[str, Any]) -> dict[str, Any]:
    """Answer the inputs as the output handle `echo`, after yielding to the loop once."""
    await asyncio.sleep(0)
    return {"echo": inputs, "async": True}


def raises(inputs: dict[str, Any]) -> dict[str, Any]:
    """Always fail, with a message naming the inputs' handles."""
    msg = f"cannot handle {sorted(inputs)}"
    raise ValueError(msg)


def exits(inputs: dict[str, Any]) -> dict[str, Any]:
    """Call sys.exit (raise SystemExit) instead of answering."""
    raise SystemExit(3)


def returns_list(inputs: dict[str, Any]) -> list[Any]:
    """Answer a list instead of an object of output handles."""
    return [inputs]


def returns_not_json(inputs: dict[str, Any]) -> dict[str, Any]:
    """Answer a value that cannot be encoded as JSON."""
    return {"thing": object()}


def returns_rich_values(inputs: dict[str, Any]) -> dict[str, Any]:
    """Answer a tuple and a datetime, which become a list and a string."""
    return {"pair": (1, 2), "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}


def mutates(inputs: dict[str, Any]) -> dict[str, Any]:
    """Change the inputs it was given, then answer them."""
    inputs["added"] = True
    return {"echo": inputs}


def slow_sync(inputs: dict[str, Any]) -> dict[str, Any]:
    """Block its thread for 0.3 s (a sync function must not block the event loop)."""
    time.sleep(0.3)
    return {"slept": 0.3}


class Namespace:
    """Callables reached by a dotted attribute path."""

    @staticmethod
    def shout(inputs: dict[str, Any]) -> dict[str, Any]:
        """Answer the upper-cased `text` handle."""
        return {"text": str(inputs["text"]).upper()}


class AsyncCallable:
    """An instance whose `__call__` is a coroutine function."""

    async def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Answer the inputs' handle ids."""
        await asyncio.sleep(0)
        return {"handles": sorted(inputs)}


async_callable = AsyncCallable()
