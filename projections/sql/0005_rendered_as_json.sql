-- The read models keep what they serve as `json`: the bytes msgspec rendered,
-- validated by PostgreSQL but not re-parsed (see events/sql/0003).
--
-- A resource is rendered once, written, and served many times as it is. As
-- `jsonb` it was parsed on every write (in a rebuild, 36 us of PostgreSQL's time
-- per result row against 15 us as `json`) and rendered back to text on every
-- read. The freshness query's `->>` works on `json` as well.
ALTER TABLE test_runs ALTER COLUMN resource TYPE json USING resource::json;
ALTER TABLE test_results ALTER COLUMN resource TYPE json USING resource::json;
ALTER TABLE test_queue ALTER COLUMN task TYPE json USING task::json;
ALTER TABLE test_run_summaries
    ALTER COLUMN latest TYPE json USING latest::json,
    ALTER COLUMN latest_passing TYPE json USING latest_passing::json,
    ALTER COLUMN latest_failing TYPE json USING latest_failing::json;
