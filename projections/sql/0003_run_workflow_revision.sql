-- The workflow revision a run snapshotted (see service/sql/0002_workflow_revision.sql).
ALTER TABLE test_runs ADD COLUMN workflow_revision bigint NOT NULL DEFAULT 0;
