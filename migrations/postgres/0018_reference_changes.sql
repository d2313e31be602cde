-- Which records each reference version changed (ARCHITECTURE.md, "Reference data changes as
-- deltas"): a running switch that finds the stored version ahead of its snapshot (an import
-- from another process, or another switch's API change on a shared database) reads the codes
-- changed since, and applies them as a delta instead of rebuilding its snapshot whole. A
-- version that changed more than 1,000 records is logged as the one code '*' (rebuild whole);
-- codes never contain '*'. Versions older than the newest 1,000 are pruned.
CREATE TABLE reference_changes (
    version BIGINT NOT NULL,
    code TEXT NOT NULL,
    PRIMARY KEY (version, code)
);
