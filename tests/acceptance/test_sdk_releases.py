"""Both SDK releases users install, each in its own environment, against a live server.

- retab 0.0.155 (`workflows.tests`) is the one in this virtual environment (dev extras);
- retab 0.0.160 (`workflows.evals`, what `pip install retab` gives) is installed by this
  set-up with `pip install --target` into `.cache/retab-0.0.160` (git-ignored, kept
  between runs) and put first on PYTHONPATH. If it cannot be installed the suite FAILS:
  a missing release must not pass CI as a skip.

Each release drives every method of its resource, sync and async (sdk_driver.py), in a
subprocess; every answer is then validated against BOTH releases' pydantic models
(sdk_models.py): a field a model declares that we never send fails the test, and the
keys we send that a model does not declare must be the documented ones below.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
API_KEY = "rtk_sdk_releases_acceptance_0123456789ab"
NEW_RELEASE = "0.0.160"
CACHE = REPO_ROOT / ".cache" / f"retab-{NEW_RELEASE}"
DRIVE_TIMEOUT_S = 600

# What we send on purpose that a release's models do not declare: the other
# release's names, and the seed pages' forms of the same values (SPEC.md:
# "emit both"). Anything else undeclared is a new, unplanned field.
UNDECLARED: dict[str, set[str]] = {
    "0.0.155": {
        "WorkflowTestRun.eval_id",
        "WorkflowTestRun.total_evals",
        "WorkflowTestResult.eval_id",
        "WorkflowTestResult.workflow_eval_run_id",
        "WorkflowTestResult.block_execution_fingerprint",
        "LatestBlockTestRunSummary.block_execution_fingerprint",
    },
    "0.0.160": {
        "WorkflowEvalRun.test_id",
        "WorkflowEvalRun.total_tests",
        "WorkflowEvalResult.test_id",
        "WorkflowEvalResult.workflow_test_run_id",
        "WorkflowEvalResult.block_config_fingerprint",
        "LatestBlockEvalRunSummary.block_config_fingerprint",
        # Declared by 0.0.155 only (sent as null).
        "Workflow.capabilities",
        "Workflow.authz_status",
    },
}
# Both releases: a run's `workflow` reference and the flat counts of the seed page,
# a summary's `run_id`, an error lifecycle's details are the seed pages' forms.
_COMMON_UNDECLARED = {
    "{run}.workflow",
    "BlockTestBatchExecutionCounts.queued",
    "BlockTestBatchExecutionCounts.running",
    "BlockTestBatchExecutionCounts.passed",
    "BlockTestBatchExecutionCounts.failed",
    "BlockTestBatchExecutionCounts.blocked",
    "BlockTestBatchExecutionCounts.error",
    "BlockTestBatchExecutionCounts.cancelled",
    "{summary}.run_id",
    # A workflow's draft version (what runs record as `workflow_version_id`).
    "Workflow.draft_version_id",
    "WorkflowBlock.created_at",
}


def _expected_undeclared(release: str) -> set[str]:
    word = "Test" if release == "0.0.155" else "Eval"
    names = {
        "{run}": f"Workflow{word}Run",
        "{summary}": f"LatestBlock{word}RunSummary",
        "BlockTestBatch": f"Block{word}Batch",
    }
    common = set()
    for entry in _COMMON_UNDECLARED:
        named = entry
        for placeholder, name in names.items():
            named = named.replace(placeholder, name)
        common.add(named)
    return UNDECLARED[release] | common


# Fixtures -------------------------------------------------------------------


@pytest.fixture(scope="session")
def new_release_path() -> Path:
    """retab 0.0.160 in its own `--target` folder, installed once and cached by version.

    Its dependencies are those of 0.0.155 (the same Requires-Dist), already in this
    environment; `--no-deps` keeps the folder to the SDK itself. A failed install
    fails the suite.
    """
    marker = CACHE / ".complete"
    if not marker.exists():
        staging = CACHE.with_name(CACHE.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(staging), f"retab=={NEW_RELEASE}"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.fail(
                f"retab=={NEW_RELEASE} could not be installed (this suite needs it):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        shutil.rmtree(CACHE, ignore_errors=True)
        staging.rename(CACHE)
        marker.touch()
    return CACHE


@pytest.fixture
def base_url(database_url: str) -> Iterator[str]:
    """A live server that executes `function` blocks from tests.run_functions."""
    process, url = start_server(
        database_url,
        FUNCTION_MODULES="tests.run_functions",
        PYTHONPATH=str(REPO_ROOT),
        BOOTSTRAP_API_KEY=API_KEY,
    )
    try:
        yield url
    finally:
        assert 0 == stop_server(process)


def _environment(release: str, new_release_path: Path) -> dict[str, str]:
    environment = {**os.environ}
    path = [str(new_release_path)] if release == NEW_RELEASE else []
    # The driver must not see this repository's tests package as `retab`'s neighbour
    # only: nothing else is on the path but the release (first) and what was there.
    if environment.get("PYTHONPATH"):
        path.append(environment["PYTHONPATH"])
    environment["PYTHONPATH"] = os.pathsep.join(path)
    return environment


def _run(
    script: str, args: list[str], release: str, new_release_path: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HERE / script), *args],
        env=_environment(release, new_release_path),
        capture_output=True,
        text=True,
        timeout=DRIVE_TIMEOUT_S,
        check=False,
    )


def _models_report(captured: Path, release: str, new_release_path: Path) -> dict[str, Any]:
    done = _run("sdk_models.py", [str(captured)], release, new_release_path)
    assert 0 == done.returncode, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert release == report["sdk"]
    return report


# Tests ----------------------------------------------------------------------


@pytest.mark.parametrize("release", ["0.0.155", NEW_RELEASE])
def test_every_method_of_each_release_works_and_every_answer_fits_both_releases_models(
    release: str, base_url: str, new_release_path: Path, tmp_path: Path
) -> None:
    """The release drives every method of its resource (`tests` for 0.0.155, `evals` for
    0.0.160), sync and async, with every list filter, auto-paging and the exception
    classes; every answer then validates against both releases' models, with no
    declared field missing and only the documented extra fields."""
    captured = tmp_path / "captured.json"
    done = _run("sdk_driver.py", [base_url, API_KEY, str(captured)], release, new_release_path)
    assert 0 == done.returncode, f"{done.stdout}\n{done.stderr}"
    family = "tests" if release == "0.0.155" else "evals"
    assert f"retab {release}: workflows.{family} OK" in done.stdout
    answers = json.loads(captured.read_text())
    paths = {answer["path"] for answer in answers}
    assert all(
        not path.startswith("/v1/workflows/tests" if family == "evals" else "/v1/workflows/evals")
        for path in paths
    )
    for models in ("0.0.155", NEW_RELEASE):
        report = _models_report(captured, models, new_release_path)
        kinds = {
            "Workflow",
            "WorkflowBlock",
            "Run",
            "Result",
            "Test" if models == "0.0.155" else "Eval",
        }
        assert len(report["checked"]) == len(kinds), report["checked"]
        assert all(count > 0 for count in report["checked"].values()), report["checked"]
        assert {} == report["missing"], f"declared by {models}, never sent: {report['missing']}"
        undeclared = set(report["undeclared"])
        print(f"answers to {release}, models of {models}: undeclared {sorted(undeclared)}")
        assert undeclared <= _expected_undeclared(models), sorted(
            undeclared - _expected_undeclared(models)
        )
