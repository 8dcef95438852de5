-- A counter bumped by every change to a workflow's blocks or saved tests. A run
-- records the revision it snapshotted; while the workflow is still at that
-- revision the run is fresh without comparing every test's fingerprints.
ALTER TABLE workflows ADD COLUMN revision bigint NOT NULL DEFAULT 0;
