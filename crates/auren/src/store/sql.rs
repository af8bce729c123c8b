//! The statements both stores run, written once. PostgreSQL's `$n` parameters also bind in
//! SQLite (numbered by first appearance, so each statement uses them in ascending order), and
//! the SQLite store registers a `now()` like PostgreSQL's. Where the dialects differ (arrays,
//! JSON types) each store has its own statement beside its use.

pub const INSERT_KEY: &str = "INSERT INTO api_keys (key_hash, user_id) VALUES ($1, $2)";

pub const USER_FOR_KEY: &str =
    "SELECT user_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL";

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
