-- A block keeps the `parent_id` it was created with (the SDK sends it); workflows
-- are listed by `updated_at` (the SDK's default `sort_by`) and by project.
ALTER TABLE blocks ADD COLUMN parent_id text;
CREATE INDEX workflows_updated_idx ON workflows (organisation_id, updated_at, id);
