import Foundation
import MizanCore

/// The schema of a Mizan SQLite file, as numbered migrations, and how a file is brought up to
/// date: in one transaction, refusing a file whose schema is newer than this build.
package enum SQLiteSchema {
    /// The schema, as numbered steps. A step is never edited once released; add a new one.
    /// Times are `timeIntervalSinceReferenceDate` doubles (exact round trips); ids are the
    /// lowercase text of time-ordered UUIDs, so that text order is time order.
    package static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                """
                CREATE TABLE mizan_nodes (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    models TEXT NOT NULL DEFAULT '[]',
                    max_concurrency INTEGER NOT NULL DEFAULT 1,
                    labels TEXT NOT NULL DEFAULT '{}',
                    status TEXT NOT NULL,
                    health TEXT NOT NULL,
                    in_flight INTEGER NOT NULL DEFAULT 0,
                    registration_token_hash BLOB UNIQUE,
                    node_token_hash BLOB UNIQUE,
                    last_seen REAL,
                    created_at REAL NOT NULL
                ) STRICT
                """,
                """
                CREATE TABLE mizan_jobs (
                    id TEXT PRIMARY KEY,
                    request_id TEXT NOT NULL,
                    model TEXT NOT NULL,
                    body BLOB NOT NULL,
                    stream INTEGER NOT NULL,
                    state TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    max_attempts INTEGER NOT NULL,
                    priority INTEGER NOT NULL DEFAULT 0,
                    node_id TEXT,
                    deadline REAL NOT NULL,
                    created_at REAL NOT NULL,
                    leased_at REAL,
                    finished_at REAL,
                    updated_at REAL NOT NULL,
                    result BLOB,
                    error_code TEXT,
                    error_message TEXT,
                    prompt_tokens INTEGER,
                    completion_tokens INTEGER,
                    usage_source TEXT,
                    idempotency_key TEXT UNIQUE,
                    api_key_id TEXT
                ) STRICT
                """,
                // The queue of each model, in lease order: a lease reads a few index entries.
                "CREATE INDEX mizan_jobs_queue ON mizan_jobs (model, priority DESC, id) WHERE state = 'accepted'",
                "CREATE INDEX mizan_jobs_live_deadline ON mizan_jobs (deadline) WHERE state IN ('accepted', 'leased')",
                "CREATE INDEX mizan_jobs_leased_node ON mizan_jobs (node_id) WHERE state = 'leased'",
                "CREATE INDEX mizan_jobs_finished ON mizan_jobs (finished_at) WHERE finished_at IS NOT NULL",
                "CREATE INDEX mizan_jobs_state ON mizan_jobs (state, id)",
                """
                CREATE TABLE mizan_api_keys (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    prefix TEXT NOT NULL,
                    key_hash BLOB NOT NULL UNIQUE,
                    created_at REAL NOT NULL,
                    revoked_at REAL
                ) STRICT
                """,
                """
                CREATE TABLE mizan_usage (
                    id INTEGER PRIMARY KEY,
                    request_id TEXT NOT NULL,
                    api_key_id TEXT,
                    model TEXT NOT NULL,
                    served_by TEXT,
                    status INTEGER NOT NULL,
                    latency_ms REAL NOT NULL,
                    prompt_tokens INTEGER,
                    completion_tokens INTEGER,
                    usage_source TEXT,
                    created_at REAL NOT NULL
                ) STRICT
                """,
                "CREATE INDEX mizan_usage_key_model ON mizan_usage (api_key_id, model)",
                "CREATE INDEX mizan_usage_created ON mizan_usage (created_at)",
            ]
        ),
        (
            2,
            [
                // The idempotent job whose tokens this row counts: one row per job at most.
                "ALTER TABLE mizan_usage ADD COLUMN tokens_of_job TEXT",
                "CREATE UNIQUE INDEX mizan_usage_tokens_of_job ON mizan_usage (tokens_of_job)",
            ]
        ),
        (
            3,
            [
                // Jobs listed by state: an index of every state was rewritten at every lease and
                // completion (about a third of their cost). Finished jobs, which stay, are indexed
                // once as they finish; live ones are listed through the queue and node indexes.
                "DROP INDEX mizan_jobs_state",
                """
                CREATE INDEX mizan_jobs_finished_state ON mizan_jobs (state, id)
                WHERE state IN ('succeeded', 'failed', 'timed_out')
                """,
            ]
        ),
        (
            4,
            [
                // Every endpoint, not only chat: the one a job was called on, those a node serves
                // (a node recorded before reported none: chat completions only).
                "ALTER TABLE mizan_jobs ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat/completions'",
                #"ALTER TABLE mizan_nodes ADD COLUMN endpoints TEXT NOT NULL DEFAULT '["chat/completions"]'"#,
                "ALTER TABLE mizan_usage ADD COLUMN endpoint TEXT NOT NULL DEFAULT 'chat/completions'",
            ]
        ),
        (
            5,
            [
                // Live jobs by deadline, indexed by what a lease does not change (a job is live
                // until it finishes): a lease no longer rewrites this index, only a finish does.
                "DROP INDEX mizan_jobs_live_deadline",
                "CREATE INDEX mizan_jobs_unfinished_deadline ON mizan_jobs (deadline) WHERE finished_at IS NULL",
            ]
        ),
        (
            6,
            [
                // What a key may do (its KeyPolicy as JSON), and its counters (KeyCounters as JSON).
                "ALTER TABLE mizan_api_keys ADD COLUMN policy TEXT NOT NULL DEFAULT '{}'",
                "ALTER TABLE mizan_api_keys ADD COLUMN counters TEXT",
            ]
        ),
        (
            7,
            [
                // The attempts that ended with the job handed back (`JobAttempt`'s text), written
                // by the requeue that ends each: a job's story keeps every lease.
                "ALTER TABLE mizan_jobs ADD COLUMN lease_history TEXT"
            ]
        ),
        (
            8,
            [
                // The finished jobs' index named its three states in an `IN` list, which SQLite
                // evaluates for every row a statement changes through a temporary table it clears
                // each time: a third of a lease's and a completion's instructions. Now only the
                // failed and timed-out jobs are indexed (written as `OR`); succeeded ones, most of
                // all jobs, are listed through the id order, and a completion writes no entry.
                "DROP INDEX mizan_jobs_finished_state",
                "CREATE INDEX mizan_jobs_unsuccessful ON mizan_jobs (state, id) WHERE state = 'failed' OR state = 'timed_out'",
            ]
        ),
        (
            9,
            [
                // Bodies in their own table, written once: SQLite writes a row whole, so every
                // transition of a job (its lease, its completion) wrote its request again — with
                // a prompt of a few KiB, overflow pages and all (7× the WAL pages of a batch with
                // 8 KiB bodies). The jobs' table is rebuilt with an explicit row number (`seq`),
                // which the bodies are keyed by and no VACUUM renumbers.
                "CREATE TABLE mizan_job_bodies (job INTEGER PRIMARY KEY, body BLOB NOT NULL) STRICT",
                """
                CREATE TABLE mizan_jobs_rebuilt (
                    seq INTEGER PRIMARY KEY,
                    id TEXT NOT NULL UNIQUE,
                    request_id TEXT NOT NULL,
                    model TEXT NOT NULL,
                    stream INTEGER NOT NULL,
                    state TEXT NOT NULL,
                    attempt INTEGER NOT NULL,
                    max_attempts INTEGER NOT NULL,
                    priority INTEGER NOT NULL DEFAULT 0,
                    node_id TEXT,
                    deadline REAL NOT NULL,
                    created_at REAL NOT NULL,
                    leased_at REAL,
                    finished_at REAL,
                    updated_at REAL NOT NULL,
                    result BLOB,
                    error_code TEXT,
                    error_message TEXT,
                    prompt_tokens INTEGER,
                    completion_tokens INTEGER,
                    usage_source TEXT,
                    idempotency_key TEXT UNIQUE,
                    api_key_id TEXT,
                    endpoint TEXT NOT NULL DEFAULT 'chat/completions',
                    lease_history TEXT
                ) STRICT
                """,
                """
                INSERT INTO mizan_jobs_rebuilt (
                    seq, id, request_id, model, stream, state, attempt, max_attempts, priority, node_id, deadline, created_at,
                    leased_at, finished_at, updated_at, result, error_code, error_message, prompt_tokens, completion_tokens,
                    usage_source, idempotency_key, api_key_id, endpoint, lease_history
                )
                SELECT rowid, id, request_id, model, stream, state, attempt, max_attempts, priority, node_id, deadline, created_at,
                    leased_at, finished_at, updated_at, result, error_code, error_message, prompt_tokens, completion_tokens,
                    usage_source, idempotency_key, api_key_id, endpoint, lease_history
                FROM mizan_jobs
                """,
                "INSERT INTO mizan_job_bodies (job, body) SELECT rowid, body FROM mizan_jobs",
                "DROP TABLE mizan_jobs",
                "ALTER TABLE mizan_jobs_rebuilt RENAME TO mizan_jobs",
                "CREATE INDEX mizan_jobs_queue ON mizan_jobs (model, priority DESC, id) WHERE state = 'accepted'",
                "CREATE INDEX mizan_jobs_leased_node ON mizan_jobs (node_id) WHERE state = 'leased'",
                "CREATE INDEX mizan_jobs_finished ON mizan_jobs (finished_at) WHERE finished_at IS NOT NULL",
                "CREATE INDEX mizan_jobs_unfinished_deadline ON mizan_jobs (deadline) WHERE finished_at IS NULL",
                "CREATE INDEX mizan_jobs_unsuccessful ON mizan_jobs (state, id) WHERE state = 'failed' OR state = 'timed_out'",
                // A job's body goes with it, however it is deleted.
                """
                CREATE TRIGGER mizan_jobs_body_goes AFTER DELETE ON mizan_jobs
                BEGIN DELETE FROM mizan_job_bodies WHERE job = old.seq; END
                """,
            ]
        ),
        (
            10,
            [
                // Only the records that count an idempotent job's tokens are indexed by it: a
                // unique index holds an entry for every NULL too, so it grew by one entry, and
                // each record wrote one more page, for every request kept (90 days).
                "DROP INDEX mizan_usage_tokens_of_job",
                "CREATE UNIQUE INDEX mizan_usage_tokens_of_job ON mizan_usage (tokens_of_job) WHERE tokens_of_job IS NOT NULL",
            ]
        ),
        (
            11,
            [
                // When a node's agent was found gone (goodbye, or its channel ended for good).
                "ALTER TABLE mizan_nodes ADD COLUMN disconnected_at REAL",
                // Console sessions signed out before they expire, so that a restart keeps them ended.
                "CREATE TABLE mizan_console_signouts (id TEXT PRIMARY KEY, expires REAL NOT NULL) STRICT",
            ]
        ),
        (
            12,
            [
                // Scheduling: a key's share, a job's fair tag within its class, when it entered
                // its class (promotion), and the node it is offered to first (affinity).
                "ALTER TABLE mizan_jobs ADD COLUMN weight INTEGER NOT NULL DEFAULT 1",
                "ALTER TABLE mizan_jobs ADD COLUMN fair_tag REAL NOT NULL DEFAULT 0",
                "ALTER TABLE mizan_jobs ADD COLUMN class_since REAL",
                "ALTER TABLE mizan_jobs ADD COLUMN preferred_node TEXT",
                "ALTER TABLE mizan_jobs ADD COLUMN preferred_until REAL",
                "ALTER TABLE mizan_jobs ADD COLUMN affinity TEXT NOT NULL DEFAULT 'none'",
                "UPDATE mizan_jobs SET class_since = created_at WHERE state = 'accepted'",
                // A node leases by class, then fair tag, then age; the preference is read from
                // the index too.
                "DROP INDEX mizan_jobs_queue",
                """
                CREATE INDEX mizan_jobs_queue ON mizan_jobs (model, priority DESC, fair_tag, id, preferred_node, preferred_until)
                WHERE state = 'accepted'
                """,
                // A key's latest tag in a class, and how many of its jobs wait.
                "CREATE INDEX mizan_jobs_key_queue ON mizan_jobs (api_key_id, model, priority, fair_tag) WHERE state = 'accepted'",
                // The jobs a promotion raises.
                "CREATE INDEX mizan_jobs_promotable ON mizan_jobs (class_since) WHERE state = 'accepted' AND priority < 1",
            ]
        ),
        (
            13,
            [
                // The models a node's local server holds loaded, as its last report said (a JSON
                // list; empty: unknown).
                "ALTER TABLE mizan_nodes ADD COLUMN loaded_models TEXT NOT NULL DEFAULT '[]'"
            ]
        ),
        (
            14,
            [
                // The class each request was served in, for usage by class.
                "ALTER TABLE mizan_usage ADD COLUMN priority TEXT"
            ]
        ),
        (
            15,
            [
                // The Files and Batch APIs and background responses (`BatchStore`). Files: an
                // upload's lines are stored with it; an output or error file's lines are its
                // batch's results, read from `mizan_batch_lines`.
                """
                CREATE TABLE mizan_files (
                    id TEXT PRIMARY KEY,
                    api_key_id TEXT NOT NULL,
                    purpose TEXT NOT NULL,
                    filename TEXT NOT NULL,
                    bytes INTEGER NOT NULL,
                    lines INTEGER NOT NULL,
                    created_at REAL NOT NULL,
                    kind TEXT NOT NULL,
                    batch_id TEXT
                ) STRICT
                """,
                // A key's files, newest first (ids are time-ordered).
                "CREATE INDEX mizan_files_key ON mizan_files (api_key_id, id)",
                """
                CREATE TABLE mizan_file_lines (
                    file_id TEXT NOT NULL,
                    number INTEGER NOT NULL,
                    custom_id TEXT NOT NULL,
                    url TEXT NOT NULL,
                    raw BLOB NOT NULL,
                    PRIMARY KEY (file_id, number)
                ) STRICT, WITHOUT ROWID
                """,
                // Metadata (an object or NULL) and failures (a list) are JSON; the claim of the
                // instance running it is `runner` until `runner_until`.
                """
                CREATE TABLE mizan_batches (
                    id TEXT PRIMARY KEY,
                    api_key_id TEXT NOT NULL,
                    endpoint TEXT NOT NULL,
                    input_file_id TEXT NOT NULL,
                    window_seconds INTEGER NOT NULL,
                    metadata TEXT,
                    status TEXT NOT NULL,
                    total INTEGER NOT NULL,
                    completed INTEGER NOT NULL DEFAULT 0,
                    failed INTEGER NOT NULL DEFAULT 0,
                    by_nodes INTEGER NOT NULL DEFAULT 0,
                    by_routes INTEGER NOT NULL DEFAULT 0,
                    created_at REAL NOT NULL,
                    in_progress_at REAL,
                    expires_at REAL NOT NULL,
                    finalizing_at REAL,
                    completed_at REAL,
                    failed_at REAL,
                    expired_at REAL,
                    cancelling_at REAL,
                    cancelled_at REAL,
                    output_file_id TEXT,
                    error_file_id TEXT,
                    failures TEXT NOT NULL DEFAULT '[]',
                    priority TEXT NOT NULL,
                    runner TEXT,
                    runner_until REAL
                ) STRICT
                """,
                // A key's batches, newest first; the batches a runner claims; a file's readers.
                "CREATE INDEX mizan_batches_key ON mizan_batches (api_key_id, id)",
                """
                CREATE INDEX mizan_batches_live ON mizan_batches (id, runner, runner_until)
                WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling')
                """,
                "CREATE INDEX mizan_batches_input ON mizan_batches (input_file_id)",
                // Each line of a batch: 0 waiting, 1 succeeded, 2 failed; its result line once ended.
                """
                CREATE TABLE mizan_batch_lines (
                    batch_id TEXT NOT NULL,
                    number INTEGER NOT NULL,
                    state INTEGER NOT NULL DEFAULT 0,
                    place TEXT,
                    line BLOB,
                    PRIMARY KEY (batch_id, number)
                ) STRICT, WITHOUT ROWID
                """,
                // The lines waiting, and an output or error file's lines, in order.
                "CREATE INDEX mizan_batch_lines_state ON mizan_batch_lines (batch_id, state, number)",
                """
                CREATE TABLE mizan_responses (
                    id TEXT PRIMARY KEY,
                    api_key_id TEXT NOT NULL,
                    model TEXT NOT NULL,
                    status TEXT NOT NULL,
                    request BLOB NOT NULL,
                    priority TEXT NOT NULL,
                    created_at REAL NOT NULL,
                    finished_at REAL,
                    result BLOB,
                    failure TEXT,
                    runner TEXT,
                    runner_until REAL
                ) STRICT
                """,
                // The responses a runner claims (by status), and those a prune deletes.
                "CREATE INDEX mizan_responses_status ON mizan_responses (status, id)",
                "CREATE INDEX mizan_responses_finished ON mizan_responses (finished_at) WHERE finished_at IS NOT NULL",
            ]
        ),
    ]

    /// The newest schema version this build knows.
    package static var version: Int { migrations.map(\.version).max() ?? 0 }

    /// Applies the migrations not yet applied, in one transaction (safe to run twice). A file
    /// whose schema is newer than this build is refused rather than used.
    /// - Parameters:
    ///   - connections: The file's connections.
    ///   - path: The file's path, as a refusal names it.
    /// - Throws: ``SQLiteStoreError/cannotOpen(path:reason:)`` for a newer schema.
    package static func migrate(_ connections: SQLiteConnections, path: String) async throws {
        let logger = connections.logger
        try await connections.write { db in
            try db.execute(
                "CREATE TABLE IF NOT EXISTS mizan_schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            let applied = Set(
                try db.query("SELECT version FROM mizan_schema_migrations").compactMap { $0.column("version")?.integer }
            )
            if let newest = applied.max(), newest > version {
                throw SQLiteStoreError.cannotOpen(
                    path: path,
                    reason: "its schema (version \(newest)) is newer than this mizan-gateway knows (\(version)); upgrade"
                )
            }
            // An existing file's upgrade is said before it starts: a step that copies every job
            // (9) takes seconds on a large file.
            if let newest = applied.max(), newest < version {
                logger.info(
                    "upgrading the SQLite file's schema",
                    metadata: ["mizan.schema.from": "\(newest)", "mizan.schema.to": "\(version)"])
            }
            for migration in migrations where !applied.contains(migration.version) {
                for statement in migration.statements { try db.execute(statement) }
                try db.query(
                    "INSERT INTO mizan_schema_migrations (version, applied_at) VALUES (?, ?)",
                    [.integer(migration.version), .float(Date().timeIntervalSinceReferenceDate)]
                )
                logger.info("applied schema migration", metadata: ["mizan.migration": "\(migration.version)"])
            }
            return ((), [])
        }
    }
}
