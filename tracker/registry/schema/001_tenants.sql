-- Tenants, their signing secrets and encryption keys, API keys and tracking URLs.
CREATE TABLE tenants (
    key_prefix   TEXT PRIMARY KEY CHECK (length(key_prefix) BETWEEN 1 AND 32),
    name         TEXT NOT NULL DEFAULT '',
    plan         TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro')),
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- HMAC secrets (kind 'hmac') and AES-256 keys (kind 'aes'). Several active rows of a kind
-- let a rotated secret keep old links working; key_id is the id carried in encrypted blobs.
CREATE TABLE tenant_secrets (
    key_prefix   TEXT NOT NULL REFERENCES tenants(key_prefix) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('hmac', 'aes')),
    key_id       INTEGER NOT NULL CHECK (key_id BETWEEN 0 AND 255),
    secret       BLOB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (key_prefix, kind, key_id)
);

-- API keys are stored as SHA-256 of the full key; `key_id` is the public part shown in lists.
CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    key_prefix   TEXT REFERENCES tenants(key_prefix) ON DELETE CASCADE,
    key_hash     BLOB NOT NULL UNIQUE,
    scope        TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    name         TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys (key_prefix);

CREATE TABLE tracking_urls (
    tu_id        TEXT PRIMARY KEY,
    key_prefix   TEXT NOT NULL REFERENCES tenants(key_prefix) ON DELETE CASCADE,
    destination  TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    params       TEXT NOT NULL DEFAULT '{}',
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX tracking_urls_tenant ON tracking_urls (key_prefix);
CREATE INDEX tracking_urls_updated ON tracking_urls (updated_at);
