"""structlog set-up: JSON lines (or a console format), the request id bound per request.

No log line carries a secret or a payload. The code logs summaries (ids,
counts, statuses, error types and short messages); `redact`, the last
processor before rendering, is the defence in depth: it masks values whose key
names a secret (`authorization`, `api_key`, `password`, `secret`, `token`,
`cookie`, `dsn`, ...), masks secrets inside text (`Bearer ...`, `Api-Key: ...`,
our `rtk_...` keys, the password of a URL), and caps long text and
collections. The standard library's logging (aiohttp's own error lines) goes
through the same processors.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import IO, Any

import structlog

REDACTED = "[redacted]"
MAX_CHARS = 1000  # longest text value kept in a log line
MAX_EXCEPTION_CHARS = 8000  # a traceback (no locals, so no payloads: only its messages)
MAX_ITEMS = 20  # most items of a list or mapping kept

_SECRET_NAME = re.compile(
    r"authorization|api[-_]?key|passw(or)?d|secret|token|cookie|credential|dsn|database_url",
    re.IGNORECASE,
)
# Secrets inside text: an auth scheme's credentials, a header or field naming a
# secret, our API keys, a URL's password.
_SECRET_TEXT = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\",;]+"), rf"\1\2{REDACTED}"),
    (
        re.compile(
            r"(?i)\b(authorization|api[-_]?key|x-api-key|passw(?:or)?d|secret|token|cookie)"
            r"(['\"]?\s*[:=]\s*['\"]?)(?!\[redacted\])[^\s'\",;&]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"\brtk_[A-Za-z0-9_\-]+"), f"rtk_{REDACTED}"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^/\s@]+@"), rf"\1{REDACTED}@"),
)


# Every pattern above needs one of these words (in some case): ASCII text without
# any has nothing to mask (most values: ids, routes, statuses), and one search of
# its lower case tells (a case-insensitive search costs several times as much). Other
# text takes every pattern: Unicode case folding matches a long s (U+017F) to an s.
_MAYBE_SECRET_TEXT = re.compile(
    r"bearer|basic|authorization|key|passw|secret|token|cookie|rtk_|://"
)
_FACT_ABOUT_A_SECRET = re.compile(r"(_id|_count|_kind)$")
# Key names repeat (a handful per line); each is judged once. Bounded.
_secret_names: dict[str, bool] = {}


def _secret_name(name: str) -> bool:
    found = _secret_names.get(name)
    if found is None:
        # `api_key_id`, `token_count` and the like name facts about a secret, not one.
        found = bool(_SECRET_NAME.search(name)) and not _FACT_ABOUT_A_SECRET.search(name)
        if len(_secret_names) < 4096:
            _secret_names[name] = found
    return found


def scrub(text: str, limit: int = MAX_CHARS) -> str:
    """Text with embedded secrets masked, cut to `limit` characters (saying how much more)."""
    if not text.isascii() or _MAYBE_SECRET_TEXT.search(text.lower()):
        for pattern, replacement in _SECRET_TEXT:
            text = pattern.sub(replacement, text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if depth >= 3 and isinstance(value, Mapping | list | tuple | set | frozenset):
        return f"<{type(value).__name__} of {len(value)} items>"
    if isinstance(value, Mapping):
        items = list(value.items())
        cleaned = {
            str(key): REDACTED if _secret_name(str(key)) else _clean(item, depth + 1)
            for key, item in items[:MAX_ITEMS]
        }
        if len(items) > MAX_ITEMS:
            cleaned["..."] = f"{len(items) - MAX_ITEMS} more items"
        return cleaned
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        kept = [_clean(item, depth + 1) for item in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            kept.append(f"... {len(items) - MAX_ITEMS} more items")
        return kept
    # Anything else would be rendered with repr(): clean that text.
    return scrub(repr(value))


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets, cap sizes (see the module's docstring)."""
    for key, value in list(event_dict.items()):
        if _secret_name(key):
            event_dict[key] = REDACTED
        elif key == "exception" and isinstance(value, str):
            event_dict[key] = scrub(value, MAX_EXCEPTION_CHARS)
        else:
            event_dict[key] = _clean(value)
    return event_dict


def processors(log_format: str = "json") -> list[structlog.types.Processor]:
    """The processor chain of every log line, ending with the renderer."""
    renderer: structlog.types.Processor
    if log_format == "console":
        renderer = structlog.dev.ConsoleRenderer()
    else:
        renderer = structlog.processors.JSONRenderer()
    return [*_PRE_CHAIN, structlog.processors.format_exc_info, redact, renderer]


_PRE_CHAIN: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def stdlib_handler(log_format: str = "json", stream: IO[str] | None = None) -> logging.Handler:
    """A standard-library handler that renders records like structlog's lines (and redacts)."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    chain = processors(log_format)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *chain[:-2]],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *chain[-2:],
            ],
        )
    )
    return handler


def configure(log_format: str = "json", level: str = "info") -> None:
    """Configure structlog and the standard library's logging to write one event per line."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=processors(log_format),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=max(numeric, logging.WARNING), handlers=[stdlib_handler(log_format)], force=True
    )
