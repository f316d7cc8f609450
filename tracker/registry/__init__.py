"""The registry database: tenants, secrets, keys, tracking URLs, webhooks, rules and counters."""
