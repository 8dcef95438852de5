"""A live server (`python -m service serve`) on a fresh database, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class LiveServer:
    """A running server: where it listens and the key it printed on first start."""

    base_url: str
    api_key: str
    process: subprocess.Popen[str]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(database_url: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    """Start `python -m service serve`; return it once /healthz answers, and its base URL."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "warning",
        **env,
    }
    if "BOOTSTRAP_API_KEY" not in env:
        environment.pop("BOOTSTRAP_API_KEY", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=1):  # noqa: S310
                return process, base_url
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.fail("the server did not answer /healthz within 30 s")


def stop_server(process: subprocess.Popen[str]) -> int:
    """SIGTERM, then wait; returns the exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()


@pytest.fixture
def live_server(database_url: str) -> Iterator[LiveServer]:
    """A server on a fresh database, started with no key: it creates one and prints it once."""
    process, base_url = start_server(database_url)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "API key (shown once)" in line, line
    key = line.rsplit(" ", 1)[-1].strip()
    yield LiveServer(base_url=base_url, api_key=key, process=process)
    assert 0 == stop_server(process)
