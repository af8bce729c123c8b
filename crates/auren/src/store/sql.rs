//! The statements both stores run, written once. PostgreSQL's `$n` parameters also bind in
//! SQLite (numbered by first appearance, so each statement uses them in ascending order), and
//! the SQLite store registers a `now()` like PostgreSQL's. Where the dialects differ (arrays,
//! JSON types) each store has its own statement beside its use.

pub const INSERT_KEY: &str = "INSERT INTO api_keys (key_hash, user_id) VALUES ($1, $2)";

pub const USER_FOR_KEY: &str =
    "SELECT user_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL";

pub const LIST_KEYS: &str = "SELECT key_hash, user_id, created_at, revoked_at FROM api_keys
     WHERE user_id = $1 ORDER BY created_at, key_hash";

/// The keys whose hash starts with the id `$1`: at most two, enough to tell an ambiguous id.
/// `substr`, not `LIKE`, so no character of the id is a wildcard; a revocation is rare enough
/// for the scan.
pub const KEYS_BY_ID: &str = "SELECT key_hash, user_id, created_at, revoked_at FROM api_keys
     WHERE substr(key_hash, 1, 16) = $1 LIMIT 2";

pub const REVOKE_KEY: &str =
    "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL
     RETURNING revoked_at";

pub const LOAD_OFFSETS: &str = "SELECT partition, next_offset FROM consumer_offsets
     WHERE consumer_group = $1 AND topic = $2 ORDER BY partition";

pub const LOAD_LOG_IDENTITY: &str = "SELECT identity FROM log_identity WHERE topic = $1";

pub const SET_LOG_IDENTITY: &str = "INSERT INTO log_identity (topic, identity) VALUES ($1, $2)
     ON CONFLICT (topic) DO UPDATE SET identity = excluded.identity, recorded_at = now()";

/// Every group's offsets in topic `$1`: they belonged to a log that is gone.
pub const FORGET_OFFSETS: &str = "DELETE FROM consumer_offsets WHERE topic = $1";

pub const LOAD_USER: &str = "SELECT t.thread_id, t.user_id, c.checkpoint_id, c.version, c.state,
            c.last_partition, c.last_offset
     FROM threads t JOIN checkpoints c ON c.checkpoint_id = t.latest_checkpoint_id
     WHERE t.user_pseudonym = $1";

pub const UPSERT_THREAD: &str = "INSERT INTO threads (thread_id, user_pseudonym, user_id, mode)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (thread_id) DO UPDATE SET mode = excluded.mode, updated_at = now()";

pub const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints
       (checkpoint_id, thread_id, parent_id, version, state, last_partition, last_offset)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub const SET_LATEST_CHECKPOINT: &str =
    "UPDATE threads SET latest_checkpoint_id = $1 WHERE thread_id = $2";

/// Keeps the newest `$2` checkpoints of thread `$1`: UUIDv7 ids sort by time, so the newest are
/// the largest ids.
pub const PRUNE_CHECKPOINTS: &str =
    "DELETE FROM checkpoints WHERE thread_id = $1 AND checkpoint_id <
       (SELECT checkpoint_id FROM checkpoints WHERE thread_id = $1
        ORDER BY checkpoint_id DESC LIMIT 1 OFFSET $2 - 1)";

pub const INSERT_SWITCH: &str = "INSERT INTO mode_history
       (switch_id, thread_id, from_mode, to_mode, confidence, switched_at, message)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (switch_id) DO NOTHING";

/// Offsets only move forward: a bridge that lost a partition in a rebalance and commits late
/// cannot take back progress the partition's new owner made.
pub const UPSERT_OFFSET: &str =
    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (consumer_group, topic, partition)
     DO UPDATE SET next_offset = excluded.next_offset, updated_at = now()
     WHERE consumer_offsets.next_offset <= excluded.next_offset";

/// Switches still to publish, oldest first, with their partition key (the user's pseudonym).
pub const UNPUBLISHED: &str = "SELECT t.user_pseudonym, h.message
     FROM mode_history h JOIN threads t ON t.thread_id = h.thread_id
     WHERE h.published_at IS NULL ORDER BY h.created_at, h.switched_at LIMIT $1";

pub const HISTORY: &str = "SELECT h.message FROM mode_history h
     JOIN threads t ON t.thread_id = h.thread_id
     WHERE t.user_pseudonym = $1 ORDER BY h.switched_at DESC, h.created_at DESC LIMIT $2";

/// Queues switch `$3` of user `$2` for a fixed sink kind `$1`.
pub const QUEUE_DELIVERY: &str =
    "INSERT INTO deliveries (sink_kind, sink_target, user_pseudonym, switch_id)
     VALUES ($1, '', $2, $3) ON CONFLICT (sink_kind, sink_target, switch_id) DO NOTHING";

/// Queues switch `$2` of user `$1` for every enabled webhook endpoint that wants that user.
/// Every endpoint takes `mode.switched`, the only event type so far.
pub const QUEUE_WEBHOOKS: &str =
    "INSERT INTO deliveries (sink_kind, sink_target, user_pseudonym, switch_id)
     SELECT 'webhook', e.id, $1, $2 FROM webhook_endpoints e
     WHERE e.disabled_at IS NULL AND (e.user_ids IS NULL OR EXISTS
       (SELECT 1 FROM webhook_endpoint_users u WHERE u.endpoint_id = e.id AND u.user_pseudonym = $1))
     ON CONFLICT (sink_kind, sink_target, switch_id) DO NOTHING";

/// Leases the due heads of kind `$3`'s queues to `$1` until `$2` (now is `$4`, limit `$5`).
/// `{lock}` is PostgreSQL's `FOR UPDATE SKIP LOCKED`, nothing in SQLite (one writer).
pub const CLAIM_DELIVERIES: &str = "UPDATE deliveries SET lease_owner = $1, lease_until = $2
     WHERE id IN (SELECT d.id FROM deliveries d
       WHERE d.id IN (SELECT MIN(id) FROM deliveries WHERE sink_kind = $3
                      GROUP BY sink_target, user_pseudonym)
         AND d.next_attempt_at <= $4 AND (d.lease_until IS NULL OR d.lease_until < $4)
       ORDER BY d.id LIMIT $5 {lock})
     RETURNING id";

pub const LOAD_DELIVERY: &str =
    "SELECT d.sink_target, d.user_pseudonym, d.attempts, d.created_at, h.message
     FROM deliveries d JOIN mode_history h ON h.switch_id = d.switch_id WHERE d.id = $1";

pub const FINISH_DELIVERY: &str = "DELETE FROM deliveries WHERE id = $1";

pub const RETRY_DELIVERY: &str = "UPDATE deliveries
     SET attempts = $1, next_attempt_at = $2, last_error = $3, lease_owner = NULL, lease_until = NULL
     WHERE id = $4";

pub const DELIVERY_BACKLOG: &str = "SELECT COUNT(*) FROM deliveries WHERE sink_kind = $1";

pub const INSERT_ENDPOINT: &str = "INSERT INTO webhook_endpoints
       (id, url, events, user_ids, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub const INSERT_ENDPOINT_USER: &str =
    "INSERT INTO webhook_endpoint_users (endpoint_id, user_pseudonym) VALUES ($1, $2)
     ON CONFLICT DO NOTHING";

pub const SELECT_ENDPOINTS: &str = "SELECT id, url, events, user_ids, secret_sealed, created_at,
            disabled_at, disabled_reason FROM webhook_endpoints";

/// An endpoint's dependents first: SQLite does not enforce the foreign keys' cascades.
pub const DELETE_ENDPOINT: [&str; 4] = [
    "DELETE FROM deliveries WHERE sink_kind = 'webhook' AND sink_target = $1",
    "DELETE FROM webhook_attempts WHERE endpoint_id = $1",
    "DELETE FROM webhook_endpoint_users WHERE endpoint_id = $1",
    "DELETE FROM webhook_endpoints WHERE id = $1",
];

pub const DISABLE_ENDPOINT: [&str; 2] = [
    "UPDATE webhook_endpoints SET disabled_at = now(), disabled_reason = $1 WHERE id = $2",
    "DELETE FROM deliveries WHERE sink_kind = 'webhook' AND sink_target = $1",
];

pub const INSERT_ATTEMPT: &str = "INSERT INTO webhook_attempts
       (endpoint_id, message_id, attempt, attempted_at, status, outcome, error, duration_ms)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub const SELECT_ATTEMPTS: &str =
    "SELECT message_id, attempt, attempted_at, status, outcome, error,
            duration_ms FROM webhook_attempts WHERE endpoint_id = $1 ORDER BY id DESC LIMIT $2";
/// The position (`seq`) of switch `$1` in the history of thread `$2`.
pub const SWITCH_SEQ_OF_THREAD: &str =
    "SELECT seq FROM mode_history WHERE switch_id = $1 AND thread_id = $2";

/// The position (`seq`) of switch `$1` in the whole history.
pub const SWITCH_SEQ: &str = "SELECT seq FROM mode_history WHERE switch_id = $1";

/// Thread `$1`'s switches after position `$2`, in history order.
pub const THREAD_SWITCHES_AFTER: &str = "SELECT message FROM mode_history
     WHERE thread_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// Every user's switches after position `$1`, in history order.
pub const SWITCHES_AFTER: &str =
    "SELECT message FROM mode_history WHERE seq > $1 ORDER BY seq LIMIT $2";
