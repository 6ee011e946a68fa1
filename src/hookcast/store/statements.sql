-- The hand-written statements of the delivery hot path: the intake, claims and outcomes.
--
-- Why by hand: each runs once per batch of up to a few hundred rows, on the driver's own
-- cursor (Dialect.execute), and SQLAlchemy's expression and result layers cost more than
-- the statement itself at that rate (moving these off them took the end-to-end benchmark
-- from 0.28 to 0.37 of the bare client). Everything else in store/ (webhooks, keys,
-- scripts, redelivery, the mail outbox, listings, pruning) uses SQLAlchemy Core.
--
-- Format: a `-- name --` line starts a statement; the `--` lines after it say what it does.
-- `-- name@postgresql --` is that dialect's own form of a statement, with the same
-- parameters: one whose plan does not hang on the planner's statistics.
-- `-- name@postgresql (rows as JSON) --` runs a whole list of parameter rows as one
-- statement: its one `?` is the rows as a JSON array of arrays (statements.run).
-- Parameters are `?` marks (the dialect rewrites them for PostgreSQL); `{marks}` stands for
-- as many marks as an IN list needs, `{lock}` / `{skip_locked}` for the dialect's row-lock
-- clause (empty on SQLite, whose writer holds the whole database), `{exclude}` for an
-- optional extra condition.

-- insert_event --
-- One signalled event; its id allocated beforehand (Dialect.allocate_ids), so the
-- deliveries can name it without RETURNING. traceparent: NULL unless tracing is on.
INSERT INTO events (id, tenant, name, primary_key, associate_id, occurred_at, changes,
                    change_values, row_values, field_values, created_at, traceparent)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?)

-- insert_event@postgresql (rows as JSON) --
-- A batch of events in one statement (see insert_attempt).
INSERT INTO events (id, tenant, name, primary_key, associate_id, occurred_at, changes,
                    change_values, row_values, field_values, created_at, traceparent)
SELECT (r->>0)::bigint, r->>1, r->>2, (r->>3)::bigint, (r->>4)::integer, r->>5, r->>6,
       r->>7, r->>8, r->>9, (r->>10)::float8, r->>11
FROM jsonb_array_elements(?::jsonb) r

-- insert_delivery --
-- One delivery of an event to a webhook, attempt 0 of cycle 0, due at next_at: now when
-- queued for any claimer, the lease's end when handed straight to the local dispatcher.
-- record: its record's key when its webhook orders or coalesces per record, else NULL.
INSERT INTO deliveries (id, event_id, webhook_id, uid, status, cycle, attempt, event_uuid,
                        next_at, created_at, record)
VALUES (?,?,?,?,0,0,0,?,?,?,?)

-- insert_delivery@postgresql (rows as JSON) --
-- A batch of deliveries in one statement (see insert_attempt).
INSERT INTO deliveries (id, event_id, webhook_id, uid, status, cycle, attempt, event_uuid,
                        next_at, created_at, record)
SELECT (r->>0)::bigint, (r->>1)::bigint, (r->>2)::bigint, r->>3, 0, 0, 0, r->>4,
       (r->>5)::float8, (r->>6)::float8, r->>7
FROM jsonb_array_elements(?::jsonb) r

-- insert_burst_delivery --
-- A delivery of a coalescing webhook (store/bursts.py): insert_delivery's columns, with its
-- burst window's end (NULL: closed, due now) and the signals merged into it (NULL: one).
INSERT INTO deliveries (id, event_id, webhook_id, uid, status, cycle, attempt, event_uuid,
                        next_at, created_at, record, window_until, merged_events)
VALUES (?,?,?,?,0,0,0,?,?,?,?,?,?)

-- open_windows --
-- A coalescing webhook's deliveries of these records that later signals may still merge
-- into: pending, never attempted, and not claimed (a claim moves next_at off window_until,
-- a closed window has none), with their payload. Oldest first, locked ({lock}: FOR UPDATE
-- OF d on PostgreSQL, see store/bursts.py), through ix_deliveries_record_pending.
SELECT d.id, d.record, d.event_id, d.merged_events, d.window_until, e.created_at, e.tenant,
       e.name, e.primary_key, e.associate_id, e.occurred_at, e.changes, e.change_values,
       e.field_values, e.traceparent
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.webhook_id = ? AND d.record IN ({marks}) AND d.record IS NOT NULL AND d.status = 0
  AND d.cycle = 0 AND d.attempt = 0 AND d.window_until > ? AND d.next_at = d.window_until
ORDER BY d.id{lock}

-- update_window --
-- A stored window after this commit's signals: its payload's event row, the signals it
-- carries, when it is due and until when it stays open (NULL: closed by a delete).
UPDATE deliveries SET event_id = ?, merged_events = ?, next_at = ?, window_until = ?
WHERE id = ?

-- delete_events --
-- Merged payload rows replaced by a newer merge (each belongs to one delivery alone).
DELETE FROM events WHERE id IN ({marks})

-- claim_signal_key --
-- Take an idempotency key for a request about to be stored; no row comes back when the
-- key was taken before (on PostgreSQL, after waiting for a concurrent taker to finish).
INSERT INTO signal_keys (tenant, key, fingerprint, event_ids, created_at)
VALUES (?,?,?,'[]',?)
ON CONFLICT (tenant, key) DO NOTHING
RETURNING key

-- signal_key --
-- What the request that took an idempotency key stored.
SELECT fingerprint, event_ids FROM signal_keys WHERE tenant = ? AND key = ?

-- store_signal_key --
-- The events stored under an idempotency key just taken.
UPDATE signal_keys SET event_ids = ? WHERE tenant = ? AND key = ?

-- match --
-- The Active webhooks (state 1) of a tenant subscribed to any of these events, through
-- the (tenant, event) index: never a scan of all webhooks.
SELECT we.event, w.id, w.name, w.type, w.target_url, w.secret, w.headers, w.properties,
       w.ordering, w.coalesce_ms, w.auto_recover, w.max_per_second, w.max_in_flight
FROM webhook_events we JOIN webhooks w ON w.id = we.webhook_id
WHERE we.tenant = ? AND we.event IN ({marks}) AND w.state = 1

-- claim --
-- Lease the deliveries `due` picks: next_at moves to the lease's end.
UPDATE deliveries SET next_at = ? WHERE id IN ({due}) RETURNING id

-- claim@postgresql --
-- The same; the leased ids as an array (an InitPlan), so the UPDATE finds its rows by
-- primary key whatever the planner guesses of the table (it hashed every delivery).
UPDATE deliveries SET next_at = ? WHERE id = ANY(ARRAY({due})) RETURNING id

-- due --
-- Up to LIMIT due pending deliveries, oldest due first (claim's subquery). {exclude} skips
-- saturated webhooks; {skip_locked} lets concurrent claimers on PostgreSQL pass each
-- other's rows instead of waiting for them.
-- Per-record ordering: a keyed delivery (record set) of a webhook with Ordering PerRecord
-- (1) is not taken while an earlier one of its record is pending (due, retrying, leased or
-- in flight; a row another claimer has locked is pending too). Unkeyed rows, the default,
-- stop at `record IS NULL`; a keyed one costs a webhook lookup by primary key and one probe
-- of ix_deliveries_record_pending.
SELECT id FROM deliveries d WHERE status = 0 AND next_at <= ?{exclude}
AND (record IS NULL
     OR (SELECT w.ordering FROM webhooks w WHERE w.id = d.webhook_id) <> 1
     OR NOT EXISTS (SELECT 1 FROM deliveries p
                    WHERE p.webhook_id = d.webhook_id AND p.record = d.record
                      AND p.status = 0 AND p.id < d.id))
ORDER BY next_at LIMIT ?{skip_locked}

-- park --
-- Put the due backlog of stuck webhooks (saturated, no attempt ended for a while: a hanging
-- receiver) out of the due range: otherwise every claim steps over all of it (it is the
-- oldest) to reach anyone else's. A parked row's next_at is PARKED + when it falls due
-- again, so it is told apart from a leased one; `unpark_expired` brings it back then
-- whoever parked it. The (webhook_id, status, next_at) index makes this a range over the
-- newly due rows only.
UPDATE deliveries SET next_at = ? + ?
WHERE webhook_id IN ({marks}) AND status = 0 AND next_at <= ?

-- unpark --
-- Due again at once: the parked rows of a webhook that is no longer stuck.
UPDATE deliveries SET next_at = ? WHERE webhook_id = ? AND status = 0 AND next_at >= ?

-- unpark_expired --
-- Due again: parked rows whose time has come (their dispatcher never unparked them, e.g.
-- it stopped). A range of ix_deliveries_due.
UPDATE deliveries SET next_at = next_at - ? WHERE status = 0 AND next_at >= ? AND next_at <= ?

-- claimed --
-- Everything an attempt needs of the deliveries just claimed, by primary key.
SELECT d.id, d.uid, d.cycle, d.attempt, d.event_uuid, d.webhook_id, w.name, w.type,
       w.target_url, w.secret, w.headers, w.properties, e.tenant, e.name, e.primary_key,
       e.associate_id, e.occurred_at, e.changes, e.change_values, e.row_values,
       e.field_values, e.created_at, e.traceparent, w.ordering, w.coalesce_ms,
       w.auto_recover, w.max_per_second, w.max_in_flight
FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.id = d.event_id
WHERE d.id IN ({marks}) ORDER BY d.id

-- claimed@postgresql --
-- The same, its webhook and event looked up by primary key for each delivery (OFFSET 0
-- keeps the planner from turning the lookups into joins): it hashed every event instead,
-- 1.6 ms for a batch of 100 at 20,000 events against 0.6 ms, growing with the table.
SELECT d.id, d.uid, d.cycle, d.attempt, d.event_uuid, d.webhook_id, w.name, w.type,
       w.target_url, w.secret, w.headers, w.properties, e.tenant, e.name, e.primary_key,
       e.associate_id, e.occurred_at, e.changes, e.change_values, e.row_values,
       e.field_values, e.created_at, e.traceparent, w.ordering, w.coalesce_ms,
       w.auto_recover, w.max_per_second, w.max_in_flight
FROM deliveries d
CROSS JOIN LATERAL (SELECT * FROM webhooks w WHERE w.id = d.webhook_id OFFSET 0) w
CROSS JOIN LATERAL (SELECT * FROM events e WHERE e.id = d.event_id OFFSET 0) e
WHERE d.id IN ({marks}) ORDER BY d.id

-- next_due --
-- When the first pending delivery due after a claim falls due. An index range that starts
-- at the claim's time never visits the due backlog of webhooks the claim skipped.
SELECT MIN(next_at) FROM deliveries WHERE status = 0 AND next_at > ?

-- delivery_statuses --
-- The status of deliveries whose outcomes are about to be written (by primary key alone;
-- the caller keeps the pending ones).
SELECT id, status FROM deliveries WHERE id IN ({marks})

-- lock_webhooks --
-- The state and error run of the webhooks of a batch, locked in id order before any
-- delivery row: concurrent outcome writers queue up instead of deadlocking, and the
-- counters the policy reads are the ones it overwrites.
SELECT id, state, consecutive_errors, failed_since_success FROM webhooks
WHERE id IN ({marks}) ORDER BY id{lock}

-- active_of --
-- Which of these webhooks are still Active (a dispatcher drops what it holds or runs of the
-- others: stopped or deleted through another process's API).
SELECT id FROM webhooks WHERE id IN ({marks}) AND state = ?

-- insert_attempt --
-- One line of the attempt log.
INSERT INTO attempts (delivery_id, webhook_id, event_uuid, cycle, attempt, at, ok,
                      http_status, latency_ms, error, output, request_excerpt,
                      response_excerpt)
VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)

-- insert_attempt@postgresql (rows as JSON) --
-- A batch's lines in one statement. Row by row, psycopg's executemany spends about 25 µs
-- of Python per row and lets go of the interpreter lock several times for each, which
-- holds up the dispatcher's event loop beside it; orjson and the server's JSON parser do
-- the same work in C. jsonb: parsed once, where each `->>` of json parses its row again
-- (1.9 against 0.3 ms for 80 rows).
INSERT INTO attempts (delivery_id, webhook_id, event_uuid, cycle, attempt, at, ok,
                      http_status, latency_ms, error, output, request_excerpt,
                      response_excerpt)
SELECT (r->>0)::bigint, (r->>1)::bigint, r->>2, (r->>3)::smallint, (r->>4)::smallint,
       (r->>5)::float8, (r->>6)::smallint, (r->>7)::smallint, (r->>8)::float8, r->>9,
       r->>10, r->>11, r->>12
FROM jsonb_array_elements(?::jsonb) r

-- count --
-- A webhook's counters after a batch: totals added, the error run set (its row is locked,
-- see lock_webhooks); the last error and times kept when the batch has none.
UPDATE webhooks SET total_calls = total_calls + ?, total_errors = total_errors + ?,
                    consecutive_errors = ?, failed_since_success = ?,
                    last_error = COALESCE(?, last_error),
                    last_error_at = COALESCE(?, last_error_at),
                    last_success_at = COALESCE(?, last_success_at), last_event_id = ?
WHERE id = ?

-- count_successes --
-- A webhook's counters after a batch of successes only, set without reading them first:
-- the transaction's last statement, so its row lock is held only until the commit (see
-- policy.needs_counters). Of concurrent batches the latest success is kept.
UPDATE webhooks SET total_calls = total_calls + ?, consecutive_errors = 0,
                    failed_since_success = 0,
                    last_success_at = CASE WHEN last_success_at IS NULL OR last_success_at < ?
                                           THEN ? ELSE last_success_at END,
                    last_event_id = ?
WHERE id = ?

-- step --
-- A delivery's next step after an attempt: delivered, given up, or pending again.
UPDATE deliveries SET status = ?, cycle = ?, attempt = ?, event_uuid = ?, next_at = ?,
                      finished_at = ?
WHERE id = ?

-- step@postgresql (rows as JSON) --
-- A batch's next steps in one statement (see insert_attempt). The ids also as an array
-- (an InitPlan), so the deliveries are found by primary key whatever the planner guesses
-- of the table: joined to the rows alone, it hashed every delivery without statistics.
WITH s AS (SELECT value AS r FROM jsonb_array_elements(?::jsonb))
UPDATE deliveries d SET status = (r->>0)::smallint, cycle = (r->>1)::smallint,
                        attempt = (r->>2)::smallint, event_uuid = r->>3,
                        next_at = (r->>4)::float8, finished_at = (r->>5)::float8
FROM s WHERE d.id = (r->>6)::bigint AND d.id = ANY(ARRAY(SELECT (r->>6)::bigint FROM s))

-- disable_if_active --
-- Active (1) -> TooManyErrors (3). The one place this transition happens: however many
-- batches or workers race, only one of them sees the Active row and changes it.
UPDATE webhooks SET state = ?, updated_at = ? WHERE id = ? AND state = ?
