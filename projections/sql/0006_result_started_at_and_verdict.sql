-- What a saved test's latest-run summaries are chosen by, as columns of its
-- results: when the test started, and its verdict. Rebuilding the summaries
-- then reads the three results each test's summaries come from, not every
-- result of every run (see LatestRunSummaries.rebuild).
ALTER TABLE test_results ADD COLUMN started_at timestamptz, ADD COLUMN verdict text;
UPDATE test_results
   SET started_at = (resource->'timing'->>'started_at')::timestamptz,
       verdict = resource->>'verdict';
