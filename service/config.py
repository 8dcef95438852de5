"""Configuration from environment variables, each with a safe default."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from service.execution.outbound import parse_allowed

T = TypeVar("T")


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The service's settings. `from_env` documents each variable (see README)."""

    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    bootstrap_api_key: str | None = None
    log_format: str = "json"
    log_level: str = "info"
    data_dir: Path = Path(".data")
    db_pool_min: int = 2
    db_pool_max: int = 10
    max_body_bytes: int = 1024 * 1024
    http_headers_timeout_s: float = 15.0
    http_body_timeout_s: float = 30.0
    runner_enabled: bool = True
    runner_concurrency: int = 512
    runner_batch: int = 128
    test_timeout_s: float = 60.0
    max_attempts: int = 3
    retry_backoff_s: float = 1.0
    block_runtime_url: str | None = None
    function_modules: frozenset[str] = frozenset()
    judge_url: str | None = None
    embeddings_url: str | None = None
    max_answer_bytes: int = 10 * 1024 * 1024
    shutdown_grace_s: float = 10.0
    lease_margin_s: float = 30.0
    key_cache_s: float = 1.0
    allowed_outbound_hosts: tuple[str, ...] = ()
    db_acquire_timeout_s: float = 5.0
    db_statement_timeout_ms: int = 15000
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read the settings from the environment (or a mapping, in tests)."""
        env = os.environ if env is None else env

        def parsed(name: str, default: T, convert: Callable[[str], T], kind: str) -> T:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                return convert(raw)
            except ValueError as error:
                msg = f"{name} must be {kind}, got {raw!r}"
                raise SystemExit(msg) from error

        def integer(name: str, default: int) -> int:
            return parsed(name, default, int, "an integer")

        def number(name: str, default: float) -> float:
            return parsed(name, default, float, "a number")

        def positive(name: str, default: float) -> float:
            # Zero would mean "no bound" to aiohttp's keep-alive timer: refused.
            value = number(name, default)
            if value <= 0:
                msg = f"{name} must be a positive number of seconds, got {value!r}"
                raise SystemExit(msg)
            return value

        def flag(name: str, default: bool) -> bool:
            raw = env.get(name, "").strip().lower()
            if raw == "":
                return default
            if raw in ("1", "true", "yes", "on"):
                return True
            if raw in ("0", "false", "no", "off"):
                return False
            msg = f"{name} must be true or false, got {raw!r}"
            raise SystemExit(msg)

        log_format = env.get("LOG_FORMAT", "json")
        if log_format not in ("json", "console"):
            msg = f"LOG_FORMAT must be json or console, got {log_format!r}"
            raise SystemExit(msg)
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            host=env.get("HOST", "127.0.0.1"),
            port=integer("PORT", 8080),
            bootstrap_api_key=env.get("BOOTSTRAP_API_KEY") or None,
            log_format=log_format,
            log_level=env.get("LOG_LEVEL", "info").lower(),
            data_dir=Path(env.get("DATA_DIR", ".data")),
            db_pool_min=integer("DB_POOL_MIN", 2),
            db_pool_max=integer("DB_POOL_MAX", 10),
            max_body_bytes=integer("MAX_BODY_BYTES", 1024 * 1024),
            http_headers_timeout_s=positive("HTTP_HEADERS_TIMEOUT_S", 15.0),
            http_body_timeout_s=positive("HTTP_BODY_TIMEOUT_S", 30.0),
            runner_enabled=flag("RUNNER_ENABLED", default=True),
            runner_concurrency=max(1, integer("RUNNER_CONCURRENCY", 512)),
            runner_batch=max(1, integer("RUNNER_BATCH", 128)),
            test_timeout_s=number("TEST_TIMEOUT_S", 60.0),
            max_attempts=max(1, integer("MAX_ATTEMPTS", 3)),
            retry_backoff_s=number("RETRY_BACKOFF_S", 1.0),
            block_runtime_url=env.get("BLOCK_RUNTIME_URL") or None,
            function_modules=frozenset(
                m.strip() for m in env.get("FUNCTION_MODULES", "").split(",") if m.strip()
            ),
            judge_url=env.get("JUDGE_URL") or None,
            embeddings_url=env.get("EMBEDDINGS_URL") or None,
            max_answer_bytes=integer("MAX_ANSWER_BYTES", 10 * 1024 * 1024),
            shutdown_grace_s=number("SHUTDOWN_GRACE_S", 10.0),
            lease_margin_s=number("LEASE_MARGIN_S", 30.0),
            key_cache_s=max(0.0, number("KEY_CACHE_S", 1.0)),
            allowed_outbound_hosts=parsed(
                "ALLOWED_OUTBOUND_HOSTS",
                (),
                parse_allowed,
                "comma-separated host names, host:port, IP addresses or CIDR networks",
            ),
            db_acquire_timeout_s=number("DB_ACQUIRE_TIMEOUT_S", 5.0),
            db_statement_timeout_ms=max(0, integer("DB_STATEMENT_TIMEOUT_MS", 15000)),
            rate_limit_per_s=max(0.0, number("RATE_LIMIT_PER_S", 0.0)),
            rate_limit_burst=max(0, integer("RATE_LIMIT_BURST", 0)),
        )
