-- Webhook endpoints per tenant and the delivery ledger of the webhook consumer.
-- Every time is Unix seconds, like the other registry tables.

-- `secret` signs deliveries with HMAC-SHA256, so it is stored as given and cannot be hashed.
-- `event_types` is a JSON array (empty: every type); `param_filters` a JSON object of
-- key -> value pairs that must all equal the event's params.
CREATE TABLE webhook_endpoints (
    endpoint_id    TEXT PRIMARY KEY,
    key_prefix     TEXT NOT NULL REFERENCES tenants(key_prefix) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    secret         TEXT NOT NULL,
    event_types    TEXT NOT NULL DEFAULT '[]',
    param_filters  TEXT NOT NULL DEFAULT '{}',
    description    TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (key_prefix);

-- One row per (endpoint, event): the UNIQUE constraint makes a redelivered or replayed
-- broker message a no-op. `event` holds the event JSON so retries need no broker read.
-- status: pending (due at next_attempt_at), delivering (claimed by a worker since
-- updated_at), delivered, dead (gave up after the maximum attempts or a permanent error).
CREATE TABLE webhook_deliveries (
    delivery_id      TEXT PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(endpoint_id) ON DELETE CASCADE,
    key_prefix       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event            TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivering', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    response_code    INTEGER,
    next_attempt_at  INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_tenant ON webhook_deliveries (key_prefix, status, created_at);
