-- Stats consumer: an idempotent ledger of counted event ids, exact counters and the
-- offsets they cover. One transaction inserts new ids, bumps counters for those ids
-- only and stores the offsets, so a crash or a redelivery never counts an event twice.

-- One row per counted event. `recorded_at` is when the consumer counted it, in Unix
-- seconds. Pruning deletes rows recorded before the ledger window, so a redelivery of
-- such an old event would count it again.
CREATE TABLE stats_ledger (
    event_id     TEXT PRIMARY KEY,
    recorded_at  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX stats_ledger_recorded ON stats_ledger (recorded_at);

-- Event counts per tenant, event type, tracking URL and UTC hour. `tu_id` is the
-- event's `tu_id` param, or '' when it has none; `hour` is Unix seconds of the hour start.
CREATE TABLE stats_counts (
    key_prefix   TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    tu_id        TEXT NOT NULL DEFAULT '',
    hour         INTEGER NOT NULL,
    count        INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (key_prefix, hour, event_type, tu_id)
) WITHOUT ROWID;
CREATE INDEX stats_counts_tu ON stats_counts (key_prefix, tu_id, hour);

-- Last broker offset whose events are in the counters, per consumer group and partition.
CREATE TABLE stats_offsets (
    consumer     TEXT NOT NULL,
    topic        TEXT NOT NULL,
    partition    INTEGER NOT NULL,
    committed    INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (consumer, topic, partition)
);
