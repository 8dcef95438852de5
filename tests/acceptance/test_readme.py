"""The README's first session works as printed: its commands, read from README.md, run here.

The block between `<!-- first-session -->` and `<!-- /first-session -->` holds
two shell snippets: the first starts the server (`scripts/run`, terminal 1),
the second is what a newcomer types in terminal 2. They run in a copy of the
repository's files (a fresh clone: no `.data`), sharing this checkout's virtual
environment, on a fresh database; only the port differs from the README's
(`PORT` and `TESTRUN_URL` point the commands at it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.acceptance.conftest import free_port
from tests.acceptance.junit import validated

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VENV", REPO_ROOT / ".venv"))
_BLOCK = re.compile(r"<!-- first-session -->\n(.*?)<!-- /first-session -->", re.S)
_SNIPPET = re.compile(r"```sh\n(.*?)```", re.S)


def first_session() -> tuple[str, str]:
    """The README's first session: (the server's snippet, the second terminal's snippet)."""
    block = _BLOCK.search((REPO_ROOT / "README.md").read_text())
    assert block is not None, "README.md has no <!-- first-session --> block"
    snippets = _SNIPPET.findall(block.group(1))
    assert 2 == len(snippets), "the first session is two sh snippets: server, then client"
    return snippets[0], snippets[1]


def _fresh_clone(target: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored) copied to `target`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (entry.decode() for entry in listed)):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    # What scripts/run would have made: the virtual environment, installed.
    (target / ".venv").symlink_to(VENV)
    return target


def _wait_for(url: str, server: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, f"scripts/run exited with {server.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the server of the first session did not answer within {seconds} s")


def test_the_readme_first_session_works_as_printed(database_url: str, tmp_path: Path) -> None:
    """scripts/run, then scripts/demo and testrun in another shell: verdicts, exit 1, JUnit."""
    server_snippet, client_snippet = first_session()
    assert "scripts/run" in server_snippet
    clone = _fresh_clone(tmp_path / "clone")
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TESTRUN_", "GITHUB_", "CI_"))
        and name not in ("BOOTSTRAP_API_KEY", "FUNCTION_MODULES", "VENV", "BUILD_TAG")
    }
    env.update(
        DATABASE_URL=database_url,
        HOST="127.0.0.1",
        PORT=str(port),
        TESTRUN_URL=f"http://127.0.0.1:{port}",
        LOG_LEVEL="warning",
    )
    server = subprocess.Popen(
        ["bash", "-c", server_snippet],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # scripts/run and the server it execs: one group to stop
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}", server, 60)
        second_terminal = subprocess.run(
            ["bash", "-c", client_snippet],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server_output, _ = server.communicate(timeout=20)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)

    assert 0 == server.returncode
    key = (clone / ".data" / "api-key").read_text().strip()
    assert f"API key: {key}" in server_output
    output = second_terminal.stdout
    assert 0 == second_terminal.returncode, output + second_terminal.stderr
    assert "Made the workflow 'Invoice demo'" in output
    assert "  failed   Total matches the purchase order (fails on purpose)" in output
    assert "  blocked  A scanned invoice without text (blocked on purpose)" in output
    assert "7 tests: 5 passed, 1 failed, 1 blocked, 0 error" in output
    assert f"http://127.0.0.1:{port}/console/runs/wftestrun_" in output
    assert "testrun exited with 1" in output
    root = validated(clone / "report.xml")
    (suite,) = root.iter("testsuite")
    assert ("Invoice demo", "7", "1", "1") == (
        suite.get("name"),
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
    )
