import Foundation
import Logging
import PostgresNIO
import Synchronization

/// The store's tables, brought to the current version by numbered migrations.
///
/// Owns whether the schema is known to be current: ``ensureCurrent()`` migrates once however
/// many statements wait for it, so that a store used before ``migrate()`` creates its schema
/// first. Migrations run on the pool directly and are not counted as the store's statements.
final class PostgresSchema: Sendable {
    /// The schema, as numbered steps. A step is never edited once released; add a new one.
    static let migrations: [(version: Int, statements: [String])] = [
        (
            1,
            [
                """
                CREATE TABLE mizan_nodes (
                    id uuid PRIMARY KEY,
                    name text NOT NULL,
                    models text[] NOT NULL DEFAULT '{}',
                    max_concurrency bigint NOT NULL DEFAULT 1,
                    leased bigint NOT NULL DEFAULT 0,
                    labels text NOT NULL DEFAULT '{}',
                    status text NOT NULL,
                    health text NOT NULL,
                    in_flight bigint NOT NULL DEFAULT 0,
                    registration_token_hash bytea UNIQUE,
                    node_token_hash bytea UNIQUE,
                    last_seen timestamptz,
                    created_at timestamptz NOT NULL
                )
                """,
                """
                CREATE TABLE mizan_jobs (
                    id uuid PRIMARY KEY,
                    request_id text NOT NULL,
                    model text NOT NULL,
                    body bytea NOT NULL,
                    stream boolean NOT NULL,
                    state text NOT NULL,
                    attempt bigint NOT NULL,
                    max_attempts bigint NOT NULL,
                    priority bigint NOT NULL DEFAULT 0,
                    node_id uuid,
                    deadline timestamptz NOT NULL,
                    created_at timestamptz NOT NULL,
                    leased_at timestamptz,
                    finished_at timestamptz,
                    updated_at timestamptz NOT NULL,
                    result bytea,
                    error_code text,
                    error_message text,
                    prompt_tokens bigint,
                    completion_tokens bigint,
                    usage_source text,
                    idempotency_key text,
                    api_key_id text,
                    origin text
                )
                """,
                "CREATE UNIQUE INDEX mizan_jobs_idempotency ON mizan_jobs (idempotency_key) WHERE idempotency_key IS NOT NULL",
                "CREATE INDEX mizan_jobs_queue ON mizan_jobs (model, priority DESC, id) WHERE state = 'accepted'",
                "CREATE INDEX mizan_jobs_leased ON mizan_jobs (node_id) WHERE state = 'leased'",
                "CREATE INDEX mizan_jobs_live_deadline ON mizan_jobs (deadline) WHERE state IN ('accepted', 'leased')",
                "CREATE INDEX mizan_jobs_finished ON mizan_jobs (finished_at) WHERE state IN ('succeeded', 'failed', 'timed_out')",
            ]
        ),
        (
            2,
            [
                """
                CREATE TABLE mizan_api_keys (
                    id text PRIMARY KEY,
                    name text NOT NULL,
                    prefix text NOT NULL,
                    key_hash bytea NOT NULL UNIQUE,
                    created_at timestamptz NOT NULL,
                    revoked_at timestamptz
                )
                """,
                """
                CREATE TABLE mizan_usage (
                    id bigserial PRIMARY KEY,
                    request_id text NOT NULL,
                    api_key_id text,
                    model text NOT NULL,
                    served_by text,
                    status bigint NOT NULL,
                    latency_ms double precision NOT NULL,
                    prompt_tokens bigint,
                    completion_tokens bigint,
                    usage_source text,
                    created_at timestamptz NOT NULL
                )
                """,
                "CREATE INDEX mizan_usage_key_model ON mizan_usage (api_key_id, model)",
            ]
        ),
        (
            3,
            [
                // The idempotent job whose tokens this row counts: one row per job at most.
                "ALTER TABLE mizan_usage ADD COLUMN tokens_of_job text",
                "CREATE UNIQUE INDEX mizan_usage_tokens_of_job ON mizan_usage (tokens_of_job)",
            ]
        ),
        (
            4,
            [
                // Every endpoint, not only chat: the one a job was called on, those a node serves
                // (a node recorded before reported none: chat completions only).
                "ALTER TABLE mizan_jobs ADD COLUMN endpoint text NOT NULL DEFAULT 'chat/completions'",
                "ALTER TABLE mizan_nodes ADD COLUMN endpoints text[] NOT NULL DEFAULT ARRAY['chat/completions']",
                "ALTER TABLE mizan_usage ADD COLUMN endpoint text NOT NULL DEFAULT 'chat/completions'",
            ]
        ),
        (
            5,
            [
                // What a key may do (its KeyPolicy as JSON), and its counters (KeyCounters as
                // JSON) with a version that each change moves on (a compare-and-swap across instances).
                "ALTER TABLE mizan_api_keys ADD COLUMN policy text NOT NULL DEFAULT '{}'",
                "ALTER TABLE mizan_api_keys ADD COLUMN counters text",
                "ALTER TABLE mizan_api_keys ADD COLUMN counters_version bigint NOT NULL DEFAULT 0",
            ]
        ),
        (
            6,
            [
                // The attempts that ended with the job handed back (`JobAttempt`'s text), written
                // by the requeue that ends each: a job's story keeps every lease.
                "ALTER TABLE mizan_jobs ADD COLUMN lease_history text"
            ]
        ),
        (
            7,
            [
                // When a node's agent was found gone (goodbye, or its channel ended for good).
                "ALTER TABLE mizan_nodes ADD COLUMN disconnected_at timestamptz",
                // Console sessions signed out before they expire, so that a restart keeps them ended.
                "CREATE TABLE mizan_console_signouts (id text PRIMARY KEY, expires timestamptz NOT NULL)",
            ]
        ),
        (
            8,
            [
                // Scheduling: a key's share, a job's fair tag within its class, when it entered
                // its class (promotion), and the node it is offered to first (affinity).
                "ALTER TABLE mizan_jobs ADD COLUMN weight bigint NOT NULL DEFAULT 1",
                "ALTER TABLE mizan_jobs ADD COLUMN fair_tag double precision NOT NULL DEFAULT 0",
                "ALTER TABLE mizan_jobs ADD COLUMN class_since timestamptz",
                "ALTER TABLE mizan_jobs ADD COLUMN preferred_node uuid",
                "ALTER TABLE mizan_jobs ADD COLUMN preferred_until timestamptz",
                "ALTER TABLE mizan_jobs ADD COLUMN affinity text NOT NULL DEFAULT 'none'",
                "UPDATE mizan_jobs SET class_since = created_at WHERE state = 'accepted'",
                // A node leases by class, then fair tag, then age.
                "DROP INDEX mizan_jobs_queue",
                "CREATE INDEX mizan_jobs_queue ON mizan_jobs (model, priority DESC, fair_tag, id) WHERE state = 'accepted'",
                // A key's latest tag in a class, and how many of its jobs wait.
                """
                CREATE INDEX mizan_jobs_key_queue ON mizan_jobs ((coalesce(api_key_id, '')), model, priority, fair_tag)
                WHERE state = 'accepted'
                """,
                // The jobs a promotion raises.
                "CREATE INDEX mizan_jobs_promotable ON mizan_jobs (class_since) WHERE state = 'accepted' AND priority < 1",
            ]
        ),
        (
            9,
            [
                // The models a node's local server holds loaded, as its last report said (empty: unknown).
                "ALTER TABLE mizan_nodes ADD COLUMN loaded_models text[] NOT NULL DEFAULT '{}'"
            ]
        ),
        (
            10,
            [
                // The class each request was served in, for usage by class.
                "ALTER TABLE mizan_usage ADD COLUMN priority text"
            ]
        ),
        (
            11,
            [
                // The Files API: uploads and the output and error files batches write (those
                // keep no lines of their own: theirs are the batch's lines that ended each way).
                // Ids are time-ordered and compared bytewise ("C"), so that lists page by id.
                """
                CREATE TABLE mizan_files (
                    id text COLLATE "C" PRIMARY KEY,
                    api_key_id text NOT NULL,
                    purpose text NOT NULL,
                    filename text NOT NULL,
                    bytes bigint NOT NULL,
                    lines integer NOT NULL,
                    created_at timestamptz NOT NULL,
                    kind text NOT NULL,
                    batch_id text
                )
                """,
                "CREATE INDEX mizan_files_key ON mizan_files (api_key_id, id DESC)",
                // An upload's lines as uploaded, numbered from 1.
                """
                CREATE TABLE mizan_file_lines (
                    file_id text NOT NULL,
                    number integer NOT NULL,
                    custom_id text NOT NULL,
                    url text NOT NULL,
                    raw bytea NOT NULL,
                    PRIMARY KEY (file_id, number)
                )
                """,
                // Batches: their counts in columns, their metadata and failures as JSON, and the
                // instance running each until when.
                """
                CREATE TABLE mizan_batches (
                    id text COLLATE "C" PRIMARY KEY,
                    api_key_id text NOT NULL,
                    endpoint text NOT NULL,
                    input_file_id text NOT NULL,
                    window_seconds bigint NOT NULL,
                    metadata jsonb,
                    status text NOT NULL,
                    count_total bigint NOT NULL DEFAULT 0,
                    count_completed bigint NOT NULL DEFAULT 0,
                    count_failed bigint NOT NULL DEFAULT 0,
                    count_by_nodes bigint NOT NULL DEFAULT 0,
                    count_by_routes bigint NOT NULL DEFAULT 0,
                    created_at timestamptz NOT NULL,
                    in_progress_at timestamptz,
                    expires_at timestamptz NOT NULL,
                    finalizing_at timestamptz,
                    completed_at timestamptz,
                    failed_at timestamptz,
                    expired_at timestamptz,
                    cancelling_at timestamptz,
                    cancelled_at timestamptz,
                    output_file_id text,
                    error_file_id text,
                    failures jsonb NOT NULL DEFAULT '[]',
                    priority text NOT NULL,
                    runner text,
                    runner_until timestamptz
                )
                """,
                "CREATE INDEX mizan_batches_key ON mizan_batches (api_key_id, id DESC)",
                "CREATE INDEX mizan_batches_input ON mizan_batches (input_file_id)",
                """
                CREATE INDEX mizan_batches_live ON mizan_batches (id)
                WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling')
                """,
                // Each line of a batch: waiting (0), succeeded (1) or failed (2), with where it
                // ran and the line written for it.
                """
                CREATE TABLE mizan_batch_lines (
                    batch_id text NOT NULL,
                    number integer NOT NULL,
                    state smallint NOT NULL DEFAULT 0,
                    place text,
                    line bytea,
                    PRIMARY KEY (batch_id, number)
                )
                """,
                "CREATE INDEX mizan_batch_lines_state ON mizan_batch_lines (batch_id, state, number)",
                // Background responses, with their answer or failure and their runner.
                """
                CREATE TABLE mizan_responses (
                    id text COLLATE "C" PRIMARY KEY,
                    api_key_id text NOT NULL,
                    model text NOT NULL,
                    status text NOT NULL,
                    request bytea NOT NULL,
                    priority text NOT NULL,
                    created_at timestamptz NOT NULL,
                    finished_at timestamptz,
                    result bytea,
                    failure jsonb,
                    runner text,
                    runner_until timestamptz
                )
                """,
                "CREATE INDEX mizan_responses_status ON mizan_responses (status, id)",
                """
                CREATE INDEX mizan_responses_ended ON mizan_responses (finished_at)
                WHERE status IN ('completed', 'failed', 'cancelled')
                """,
            ]
        ),
    ]

    /// The schema version this build migrates to.
    static var version: Int { migrations.map(\.version).max() ?? 0 }

    private let pool: PostgresClient
    private let logger: Logger
    /// Set once the schema is known to be current, so that later statements skip the check.
    private let migrated = Atomic<Bool>(false)
    /// The migration under way, shared by the statements that wait for it.
    private let migration = Mutex<Task<Void, any Error>?>(nil)

    /// Creates the schema's keeper over a pool; nothing runs until ``migrate()`` or ``ensureCurrent()``.
    /// - Parameters:
    ///   - pool: A PostgreSQL client whose `run()` is running.
    ///   - logger: Where applied migrations are logged.
    init(pool: PostgresClient, logger: Logger) {
        self.pool = pool
        self.logger = logger
    }

    /// Whether the schema is known to be current (migrated by this keeper).
    var isCurrent: Bool { migrated.load(ordering: .acquiring) }

    /// Applies the migrations not yet applied, in one transaction under an advisory lock so
    /// that instances starting together do not race. Safe to call any number of times.
    /// - Throws: A database error; nothing is applied then.
    func migrate() async throws {
        try await pool.withOpenConnection(logger: logger) { connection in
            try await self.migrate(on: connection)
        }
        migrated.store(true, ordering: .releasing)
    }

    /// Returns once the schema is current, migrating it first if this keeper has not: one
    /// migration however many callers wait, and tried again by the next caller if it failed.
    /// - Throws: The migration's error.
    func ensureCurrent() async throws {
        if migrated.load(ordering: .acquiring) { return }
        let task = migration.withLock { running in
            if let running { return running }
            let task = Task { try await self.migrate() }
            running = task
            return task
        }
        do {
            try await task.value
        } catch {
            // Let the next statement try again (the database may come back).
            migration.withLock { running in if running == task { running = nil } }
            throw error
        }
    }

    private func migrate(on connection: PostgresConnection) async throws {
        try await connection.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(7271009)", logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS mizan_schema_migrations (
                    version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                logger: self.logger
            )
            var applied: Set<Int> = []
            for try await version in try await connection.query("SELECT version FROM mizan_schema_migrations", logger: self.logger).decode(
                Int.self)
            {
                applied.insert(version)
            }
            for migration in Self.migrations where !applied.contains(migration.version) {
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                }
                try await connection.query(
                    "INSERT INTO mizan_schema_migrations (version) VALUES (\(migration.version))", logger: self.logger)
                self.logger.info("applied schema migration", metadata: ["mizan.migration": "\(migration.version)"])
            }
        }
    }
}
