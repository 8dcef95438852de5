"""`testrun`: the CI client of the service, over its HTTP API only.

It creates a run (with an `Idempotency-Key`), follows it through the run's
Server-Sent Events feed (polling when the feed is unavailable), prints the
failures, writes JUnit XML, and exits 0/1/2/3 (see `service.testrun.__main__`).
It imports nothing of the server: stdlib, the aiohttp client and msgspec only.

Details:

- The key: `--idempotency-key`, else `TESTRUN_IDEMPOTENCY_KEY`, else derived from
  the CI job (GitHub Actions run, attempt and job; GitLab `CI_JOB_ID`;
  Buildkite, CircleCI, Azure Pipelines, Jenkins `BUILD_TAG`) with the URL and
  the request, so a retried step gets the run its first attempt started; outside
  CI a random one.
- `--junit FILE`: one `testsuite` per run, one `testcase` per saved test,
  `failure` for failed, `error` for blocked (type `blocked/CODE`) and
  incomplete tests, `skipped` for cancelled ones; the run, workflow and each
  test's result id are suite properties (`run_id`, `result_id.TEST_ID`). It
  validates against the Jenkins xUnit `junit-10.xsd` that GitLab, Jenkins and
  most CI systems read (`tests/acceptance/junit-10.xsd`).
- `--json`: one JSON document on stdout (`exit_code`, `ending`, `run_id`,
  `status`, `counts`, one record per test, the run); people's lines go to stderr.
"""
