-- SDK 0.0.160 (`workflows.evals`) reads the same resources under new names:
-- every rendered run, result and latest-run summary carries both. Rows written
-- before this migration get the new names here, with the values of the old.
UPDATE test_runs
   SET resource = (resource::jsonb || jsonb_build_object(
           'eval_id', resource->'test_id',
           'total_evals', resource->'total_tests'))::json
 WHERE resource->'total_evals' IS NULL;
UPDATE test_results
   SET resource = (resource::jsonb || jsonb_build_object(
           'eval_id', resource->'test_id',
           'workflow_eval_run_id', resource->'workflow_test_run_id',
           'block_execution_fingerprint', resource->'block_config_fingerprint',
           'artifact', NULL,
           'routing_decisions', NULL))::json
 WHERE resource->'eval_id' IS NULL;
UPDATE test_run_summaries
   SET latest = CASE WHEN latest IS NULL THEN NULL ELSE (latest::jsonb || jsonb_build_object(
           'block_execution_fingerprint', latest->'block_config_fingerprint'))::json END,
       latest_passing = CASE WHEN latest_passing IS NULL THEN NULL
           ELSE (latest_passing::jsonb || jsonb_build_object(
           'block_execution_fingerprint', latest_passing->'block_config_fingerprint'))::json END,
       latest_failing = CASE WHEN latest_failing IS NULL THEN NULL
           ELSE (latest_failing::jsonb || jsonb_build_object(
           'block_execution_fingerprint', latest_failing->'block_config_fingerprint'))::json END;
