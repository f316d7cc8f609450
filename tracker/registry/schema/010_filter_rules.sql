-- Event filter: per-tenant rules, rate limit overrides, drop counters and offsets.

-- `definition` is the rule's JSON (see tracker/consumers/event_filter/rules.py); it is
-- compiled when saved, so a stored rule always compiles. Rules run in id order.
CREATE TABLE filter_rules (
    rule_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    key_prefix   TEXT NOT NULL REFERENCES tenants(key_prefix) ON DELETE CASCADE,
    name         TEXT NOT NULL DEFAULT '',
    definition   TEXT NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX filter_rules_tenant ON filter_rules (key_prefix);

-- Per-tenant rate limits over the filter's window; NULL keeps the default from the environment.
CREATE TABLE filter_limits (
    key_prefix   TEXT PRIMARY KEY REFERENCES tenants(key_prefix) ON DELETE CASCADE,
    tenant_limit INTEGER CHECK (tenant_limit IS NULL OR tenant_limit >= 0),
    ip_limit     INTEGER CHECK (ip_limit IS NULL OR ip_limit >= 0),
    updated_at   INTEGER NOT NULL
);

-- Dropped events per tenant, reason and UTC hour (Unix seconds of the hour start).
-- `reason` is one of bot, rate_tenant, rate_ip or rule:<rule_id>.
CREATE TABLE filter_drops (
    key_prefix   TEXT NOT NULL,
    hour         INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    count        INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (key_prefix, hour, reason)
) WITHOUT ROWID;

-- Last offset whose drops are in `filter_drops`, stored in the same transaction.
CREATE TABLE filter_offsets (
    consumer     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    partition    INTEGER NOT NULL,
    committed    INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);
