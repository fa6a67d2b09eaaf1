import Foundation
import Logging
import MizanCore
import MizanStore
import PostgresNIO

/// The batch ledger: the Files API's files and an upload's lines, batches with each line's
/// result, and background responses.
///
/// Every call is one statement, so that what must happen together does: a batch is stored
/// with one waiting row per input line; a line's result is written only while the line waits
/// and is counted in its batch by the same statement; a batch's move to a terminal status
/// records its output and error files (their lines and bytes summed in SQL) with it. An output
/// or error file keeps no lines of its own: its lines are the batch's that ended each way.
///
/// Batches and background responses are claimed by one conditional `UPDATE` over rows locked
/// with `FOR UPDATE SKIP LOCKED`, so that two instances never both hold one.
struct PostgresBatchLedger: Sendable {
    private let context: PostgresStoreContext
    private var client: StoreClient { context.client }
    private var logger: Logger { context.logger }

    /// Creates the ledger over the store's shared context.
    init(context: PostgresStoreContext) {
        self.context = context
    }

    // MARK: Files

    /// Stores an uploaded file and its lines (one statement).
    func createFile(_ file: StoredFile, lines: [InputLine]) async throws -> StoredFile {
        _ = try await client.prepared(
            CreateFile.self,
            """
            WITH file AS (
                INSERT INTO mizan_files (id, api_key_id, purpose, filename, bytes, lines, created_at, kind, batch_id)
                VALUES (\(file.id), \(file.apiKeyID), \(file.purpose), \(file.filename), \(file.bytes), \(file.lines)::bigint,
                    \(file.createdAt), \(file.kind.rawValue), \(file.batchID))
            )
            INSERT INTO mizan_file_lines (file_id, number, custom_id, url, raw)
            SELECT \(file.id)::text, n, c, u, r
            FROM unnest(\(lines.map(\.number))::bigint[], \(lines.map(\.customID))::text[], \(lines.map(\.url))::text[],
                \(lines.map { ByteBuffer(bytes: $0.raw) })::bytea[]) AS l(n, c, u, r)
            """,
            logger: logger
        ) { $0 }
        return file
    }

    /// A file by id, of `apiKeyID` unless `nil`.
    func file(_ id: String, apiKeyID: String?) async throws -> StoredFile? {
        try await client.prepared(
            FileByID.self,
            """
            SELECT \(unescaped: Self.fileColumns) FROM mizan_files
            WHERE id = \(id) AND (\(apiKeyID)::text IS NULL OR api_key_id = \(apiKeyID))
            """,
            logger: logger, Self.file
        ).first
    }

    /// Files, newest first: a key's, or (`nil`) every key's.
    func files(apiKeyID: String?, after: String?, limit: Int) async throws -> [StoredFile] {
        guard let apiKeyID else {
            return try await client.prepared(
                AllFiles.self,
                """
                SELECT \(unescaped: Self.fileColumns) FROM mizan_files
                WHERE \(after)::text IS NULL OR id < \(after)
                ORDER BY id DESC LIMIT \(max(0, limit))
                """,
                logger: logger, Self.file
            )
        }
        return try await client.prepared(
            KeyFiles.self,
            """
            SELECT \(unescaped: Self.fileColumns) FROM mizan_files
            WHERE api_key_id = \(apiKeyID) AND (\(after)::text IS NULL OR id < \(after))
            ORDER BY id DESC LIMIT \(max(0, limit))
            """,
            logger: logger, Self.file
        )
    }

    /// A file's lines in order: an upload's as uploaded, an output or error file's as its
    /// batch's lines that ended each way.
    func fileLines(_ file: StoredFile, after: Int, limit: Int) async throws -> [(number: Int, line: Data)] {
        let rows: [NumberedLine]
        switch file.kind {
        case .upload:
            rows = try await client.prepared(
                UploadLines.self,
                """
                SELECT number, raw FROM mizan_file_lines
                WHERE file_id = \(file.id) AND number > \(after)::bigint
                ORDER BY number LIMIT \(max(0, limit))
                """,
                logger: logger, Self.numberedLine
            )
        case .output, .error:
            rows = try await client.prepared(
                WrittenLines.self,
                """
                SELECT number, line FROM mizan_batch_lines
                WHERE batch_id = \(file.batchID ?? "") AND state = \(Self.state(succeeded: file.kind == .output))::bigint
                    AND number > \(after)::bigint
                ORDER BY number LIMIT \(max(0, limit))
                """,
                logger: logger, Self.numberedLine
            )
        }
        return rows.map { ($0.number, $0.line) }
    }

    /// Deletes a file (an upload's lines with it) unless it is the input of a batch not yet
    /// ended.
    /// - Throws: `MizanError` `conflict` for the input of a batch not yet ended.
    func deleteFile(_ id: String, apiKeyID: String?) async throws -> Bool {
        let outcome = try await client.prepared(
            DeleteFile.self,
            """
            WITH found AS (
                SELECT id FROM mizan_files WHERE id = \(id) AND (\(apiKeyID)::text IS NULL OR api_key_id = \(apiKeyID)) FOR UPDATE
            ), busy AS (
                SELECT EXISTS (
                    SELECT 1 FROM mizan_batches WHERE input_file_id = \(id) AND status IN (\(unescaped: Self.liveBatch))
                ) AS busy
            ), gone AS (
                DELETE FROM mizan_files WHERE id IN (SELECT id FROM found) AND NOT (SELECT busy FROM busy) RETURNING id
            ), lines AS (
                DELETE FROM mizan_file_lines WHERE file_id IN (SELECT id FROM gone)
            )
            SELECT EXISTS (SELECT 1 FROM found), (SELECT busy FROM busy)
            """,
            logger: logger
        ) { try $0.decode((Bool, Bool).self) }
        guard let (found, busy) = outcome.first, found else { return false }
        if busy { throw BatchStoreErrors.fileInUse(id) }
        return true
    }

    // MARK: Batches

    /// Stores a new batch with one waiting line per line of its input (one statement).
    /// - Throws: `MizanError` `notFound` when its input is not its key's upload.
    func createBatch(_ batch: Batch) async throws -> Batch {
        let rows = try await client.prepared(
            CreateBatch.self,
            """
            WITH input AS (
                SELECT id FROM mizan_files
                WHERE id = \(batch.inputFileID) AND api_key_id = \(batch.apiKeyID) AND kind = 'upload'
                FOR KEY SHARE
            ), total AS (
                SELECT count(*) AS lines FROM mizan_file_lines WHERE file_id IN (SELECT id FROM input)
            ), batch AS (
                INSERT INTO mizan_batches (id, api_key_id, endpoint, input_file_id, window_seconds, metadata, status,
                    count_total, count_completed, count_failed, count_by_nodes, count_by_routes, created_at, in_progress_at,
                    expires_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at,
                    output_file_id, error_file_id, failures, priority)
                SELECT \(batch.id)::text, \(batch.apiKeyID)::text, \(batch.endpoint.rawValue)::text, input.id,
                    \(batch.windowSeconds)::bigint, \(Self.json(batch.metadata))::text::jsonb, \(batch.status.rawValue)::text,
                    total.lines, \(batch.counts.completed)::bigint, \(batch.counts.failed)::bigint, \(batch.counts.byNodes)::bigint,
                    \(batch.counts.byRoutes)::bigint, \(batch.createdAt)::timestamptz, \(batch.inProgressAt)::timestamptz,
                    \(batch.expiresAt)::timestamptz, \(batch.finalizingAt)::timestamptz, \(batch.completedAt)::timestamptz,
                    \(batch.failedAt)::timestamptz, \(batch.expiredAt)::timestamptz, \(batch.cancellingAt)::timestamptz,
                    \(batch.cancelledAt)::timestamptz, \(batch.outputFileID)::text, \(batch.errorFileID)::text,
                    \(Self.json(batch.failures))::text::jsonb, \(batch.priority.rawValue)::text
                FROM input, total
                RETURNING \(unescaped: Self.batchColumns)
            ), lines AS (
                INSERT INTO mizan_batch_lines (batch_id, number)
                SELECT batch.id, l.number FROM batch JOIN mizan_file_lines l ON l.file_id = batch.input_file_id
            )
            SELECT \(unescaped: Self.batchColumns) FROM batch
            """,
            logger: logger, Self.batch
        )
        guard let created = rows.first else { throw BatchStoreErrors.noInput(batch.inputFileID) }
        return created
    }

    /// A batch by id, of `apiKeyID` unless `nil`.
    func batch(_ id: String, apiKeyID: String?) async throws -> Batch? {
        try await client.prepared(
            BatchByID.self,
            """
            SELECT \(unescaped: Self.batchColumns) FROM mizan_batches
            WHERE id = \(id) AND (\(apiKeyID)::text IS NULL OR api_key_id = \(apiKeyID))
            """,
            logger: logger, Self.batch
        ).first
    }

    /// Batches, newest first: a key's, or (`nil`) every key's.
    func batches(apiKeyID: String?, after: String?, limit: Int) async throws -> [Batch] {
        guard let apiKeyID else {
            return try await client.prepared(
                AllBatches.self,
                """
                SELECT \(unescaped: Self.batchColumns) FROM mizan_batches
                WHERE \(after)::text IS NULL OR id < \(after)
                ORDER BY id DESC LIMIT \(max(0, limit))
                """,
                logger: logger, Self.batch
            )
        }
        return try await client.prepared(
            KeyBatches.self,
            """
            SELECT \(unescaped: Self.batchColumns) FROM mizan_batches
            WHERE api_key_id = \(apiKeyID) AND (\(after)::text IS NULL OR id < \(after))
            ORDER BY id DESC LIMIT \(max(0, limit))
            """,
            logger: logger, Self.batch
        )
    }

    /// Claims for `runner` the live batches no other instance holds (or whose claim lapsed),
    /// renewing `runner`'s own; rows another instance is claiming are skipped.
    /// - Returns: The batches now held by `runner`, oldest first.
    func claimBatches(runner: String, until: Date, now: Date, limit: Int) async throws -> [Batch] {
        guard limit > 0 else { return [] }
        return try await client.prepared(
            ClaimBatches.self,
            """
            UPDATE mizan_batches SET runner = \(runner), runner_until = \(until)
            WHERE id IN (
                SELECT id FROM mizan_batches
                WHERE status IN (\(unescaped: Self.liveBatch))
                    AND (runner IS NULL OR runner_until <= \(now) OR runner = \(runner))
                ORDER BY (runner IS NOT DISTINCT FROM \(runner)) DESC, id LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            )
            RETURNING \(unescaped: Self.batchColumns)
            """,
            logger: logger, Self.batch
        ).sorted { $0.id < $1.id }
    }

    /// Ends `runner`'s claims on batches and background responses (one statement).
    func releaseClaims(runner: String) async throws {
        _ = try await client.prepared(
            ReleaseClaims.self,
            """
            WITH batches AS (
                UPDATE mizan_batches SET runner = NULL, runner_until = NULL WHERE runner = \(runner)
            )
            UPDATE mizan_responses SET runner = NULL, runner_until = NULL WHERE runner = \(runner)
            """,
            logger: logger
        ) { $0 }
    }

    /// The waiting lines of a batch, in order, read from its input.
    func pendingLines(batchID: String, after: Int, limit: Int) async throws -> [InputLine] {
        try await client.prepared(
            PendingLines.self,
            """
            SELECT f.number, f.custom_id, f.url, f.raw
            FROM mizan_batch_lines l
            JOIN mizan_batches b ON b.id = l.batch_id
            JOIN mizan_file_lines f ON f.file_id = b.input_file_id AND f.number = l.number
            WHERE l.batch_id = \(batchID) AND l.state = 0 AND l.number > \(after)::bigint
            ORDER BY l.number LIMIT \(max(0, limit))
            """,
            logger: logger
        ) { row in
            let (number, customID, url, raw) = try row.decode((Int, String, String, Data).self)
            return InputLine(number: number, customID: customID, url: url, raw: raw)
        }
    }

    /// Records how lines ended, each only while it waits, and adds them to the batch's counts:
    /// one statement.
    /// - Returns: How many were recorded.
    func finishLines(batchID: String, _ results: [LineResult], now: Date) async throws -> Int {
        guard !results.isEmpty else { return 0 }
        // In line order, so that writers of overlapping lines lock them in one order.
        let results = results.sorted { $0.number < $1.number }
        let rows = try await client.prepared(
            FinishLines.self,
            """
            WITH result AS (
                SELECT * FROM unnest(\(results.map(\.number))::bigint[], \(results.map(\.succeeded))::boolean[],
                    \(results.map { ByteBuffer(bytes: $0.line) })::bytea[], \(results.map(\.place.rawValue))::text[])
                    AS r(number, succeeded, line, place)
            ), ended AS (
                UPDATE mizan_batch_lines l
                SET state = CASE WHEN result.succeeded THEN 1 ELSE 2 END, place = result.place, line = result.line
                FROM result
                WHERE l.batch_id = \(batchID) AND l.number = result.number AND l.state = 0
                RETURNING l.state, l.place
            ), counted AS (
                UPDATE mizan_batches SET
                    count_completed = count_completed + (SELECT count(*) FROM ended WHERE state = 1),
                    count_failed = count_failed + (SELECT count(*) FROM ended WHERE state = 2),
                    count_by_nodes = count_by_nodes + (SELECT count(*) FROM ended WHERE place = 'node'),
                    count_by_routes = count_by_routes + (SELECT count(*) FROM ended WHERE place = 'route')
                WHERE id = \(batchID) AND EXISTS (SELECT 1 FROM ended)
            )
            SELECT count(*) FROM ended
            """,
            logger: logger
        ) { try $0.decode(Int.self) }
        return rows.first ?? 0
    }

    /// Moves a batch to `status` when it is in one of `from`, stamping its time as
    /// `Batch.move` does; a terminal status ends its claim and records its output file (when
    /// any line succeeded) and error file (when any failed), their lines and bytes summed from
    /// its lines: one statement.
    /// - Returns: The batch after the write, or `nil` when it was in none of `from`.
    func moveBatch(_ id: String, to status: Batch.Status, from: [Batch.Status], failure: Batch.Failure?, now: Date) async throws
        -> Batch?
    {
        // The stamps and files a move writes, as the shared helpers make them.
        var stamps = Batch(id: id, apiKeyID: "", endpoint: .chatCompletions, inputFileID: "", createdAt: now)
        stamps.move(to: status, failure: failure, now: now)
        let output = StoredFile.written(by: stamps, kind: .output, lines: 0, bytes: 0, now: now)
        let error = StoredFile.written(by: stamps, kind: .error, lines: 0, bytes: 0, now: now)
        let terminal = status.isTerminal
        return try await client.prepared(
            MoveBatch.self,
            """
            WITH ended AS (
                SELECT count(*) FILTER (WHERE state = 1) AS output_lines,
                    coalesce(sum(length(line) + 1) FILTER (WHERE state = 1), 0) AS output_bytes,
                    count(*) FILTER (WHERE state = 2) AS error_lines,
                    coalesce(sum(length(line) + 1) FILTER (WHERE state = 2), 0) AS error_bytes
                FROM mizan_batch_lines WHERE batch_id = \(id) AND state > 0 AND \(terminal)
            ), moved AS (
                UPDATE mizan_batches SET status = \(status.rawValue),
                    failures = failures || \(Self.json(stamps.failures))::text::jsonb,
                    in_progress_at = coalesce(in_progress_at, \(stamps.inProgressAt)),
                    finalizing_at = coalesce(finalizing_at, \(stamps.finalizingAt)),
                    cancelling_at = coalesce(cancelling_at, \(stamps.cancellingAt)),
                    completed_at = coalesce(\(stamps.completedAt), completed_at),
                    failed_at = coalesce(\(stamps.failedAt), failed_at),
                    expired_at = coalesce(\(stamps.expiredAt), expired_at),
                    cancelled_at = coalesce(\(stamps.cancelledAt), cancelled_at),
                    output_file_id = CASE WHEN ended.output_lines > 0 THEN \(output.id) ELSE output_file_id END,
                    error_file_id = CASE WHEN ended.error_lines > 0 THEN \(error.id) ELSE error_file_id END,
                    runner = CASE WHEN \(terminal) THEN NULL ELSE runner END,
                    runner_until = CASE WHEN \(terminal) THEN NULL ELSE runner_until END
                FROM ended
                WHERE id = \(id) AND status = ANY(\(from.map(\.rawValue))::text[])
                RETURNING \(unescaped: Self.batchColumns), output_lines, output_bytes, error_lines, error_bytes
            ), files AS (
                INSERT INTO mizan_files (id, api_key_id, purpose, filename, bytes, lines, created_at, kind, batch_id)
                SELECT f.id, moved.api_key_id, f.purpose, f.filename, f.bytes, f.lines, \(now)::timestamptz, f.kind, moved.id
                FROM moved CROSS JOIN LATERAL (
                    VALUES (\(output.id), \(output.purpose), \(output.filename), moved.output_bytes, moved.output_lines,
                        \(StoredFile.Kind.output.rawValue)),
                        (\(error.id), \(error.purpose), \(error.filename), moved.error_bytes, moved.error_lines,
                        \(StoredFile.Kind.error.rawValue))
                ) AS f(id, purpose, filename, bytes, lines, kind)
                WHERE f.lines > 0
            )
            SELECT \(unescaped: Self.batchColumns) FROM moved
            """,
            logger: logger, Self.batch
        ).first
    }

    // MARK: Background responses

    /// Stores a new background response.
    func createResponse(_ response: BackgroundResponse) async throws {
        _ = try await client.prepared(
            CreateResponse.self,
            """
            INSERT INTO mizan_responses (id, api_key_id, model, status, request, priority, created_at, finished_at, result,
                failure, runner, runner_until)
            VALUES (\(response.id), \(response.apiKeyID), \(response.model), \(response.status.rawValue), \(response.request),
                \(response.priority.rawValue), \(response.createdAt), \(response.finishedAt), \(response.result),
                \(Self.json(response.failure))::text::jsonb, \(response.runner), \(response.runnerUntil))
            """,
            logger: logger
        ) { $0 }
    }

    /// A background response by id, of `apiKeyID` unless `nil`.
    func response(_ id: String, apiKeyID: String?) async throws -> BackgroundResponse? {
        try await client.prepared(
            ResponseByID.self,
            """
            SELECT \(unescaped: Self.responseColumns) FROM mizan_responses
            WHERE id = \(id) AND (\(apiKeyID)::text IS NULL OR api_key_id = \(apiKeyID))
            """,
            logger: logger, Self.response
        ).first
    }

    /// Claims background responses not yet ended as ``claimBatches(runner:until:now:limit:)``
    /// claims batches.
    func claimResponses(runner: String, until: Date, now: Date, limit: Int) async throws -> [BackgroundResponse] {
        guard limit > 0 else { return [] }
        return try await client.prepared(
            ClaimResponses.self,
            """
            UPDATE mizan_responses SET runner = \(runner), runner_until = \(until)
            WHERE id IN (
                SELECT id FROM mizan_responses
                WHERE status IN (\(unescaped: Self.liveResponse))
                    AND (runner IS NULL OR runner_until <= \(now) OR runner = \(runner))
                ORDER BY (runner IS NOT DISTINCT FROM \(runner)) DESC, id LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            )
            RETURNING \(unescaped: Self.responseColumns)
            """,
            logger: logger, Self.response
        ).sorted { $0.id < $1.id }
    }

    /// Moves a background response to `status` when it is in one of `from`, as
    /// `BackgroundResponse.move` does: its answer and failure kept unless given, and a
    /// terminal status stamping its end and ending its claim.
    /// - Returns: The response after the write, or `nil` when it was in none of `from`.
    func moveResponse(
        _ id: String, to status: BackgroundResponse.Status, from: [BackgroundResponse.Status], result: Data?,
        failure: Batch.Failure?, now: Date
    ) async throws -> BackgroundResponse? {
        let terminal = status.isTerminal
        return try await client.prepared(
            MoveResponse.self,
            """
            UPDATE mizan_responses SET status = \(status.rawValue),
                result = coalesce(\(result)::bytea, result),
                failure = coalesce(\(Self.json(failure))::text::jsonb, failure),
                finished_at = CASE WHEN \(terminal) THEN \(now) ELSE finished_at END,
                runner = CASE WHEN \(terminal) THEN NULL ELSE runner END,
                runner_until = CASE WHEN \(terminal) THEN NULL ELSE runner_until END
            WHERE id = \(id) AND status = ANY(\(from.map(\.rawValue))::text[])
            RETURNING \(unescaped: Self.responseColumns)
            """,
            logger: logger, Self.response
        ).first
    }

    /// Deletes background responses that ended before `endedBefore`.
    /// - Returns: How many.
    func pruneResponses(endedBefore: Date) async throws -> Int {
        try await client.prepared(
            PruneResponses.self,
            """
            WITH gone AS (
                DELETE FROM mizan_responses
                WHERE status IN (\(unescaped: Self.endedResponse)) AND finished_at < \(endedBefore)
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            logger: logger
        ) { try $0.decode(Int.self) }.first ?? 0
    }
}

// MARK: Rows

extension PostgresBatchLedger {
    /// A line with its number, as a file's lines are read.
    struct NumberedLine: Sendable {
        /// Its number, from 1.
        var number: Int
        /// The line, without its line end.
        var line: Data
    }

    /// The columns a ``StoredFile`` is read from.
    static let fileColumns = "id, api_key_id, purpose, filename, bytes, lines, created_at, kind, batch_id"

    /// The columns a ``Batch`` is read from.
    static let batchColumns = """
        id, api_key_id, endpoint, input_file_id, window_seconds, metadata::text AS metadata, status, \
        count_total, count_completed, count_failed, count_by_nodes, count_by_routes, created_at, in_progress_at, \
        expires_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, \
        output_file_id, error_file_id, failures::text AS failures, priority
        """

    /// The columns a ``BackgroundResponse`` is read from.
    static let responseColumns = """
        id, api_key_id, model, status, request, priority, created_at, finished_at, result, failure::text AS failure, \
        runner, runner_until
        """

    /// The statuses of batches a runner works on, as SQL literals (those of the claim index).
    static let liveBatch = Batch.Status.live.map { "'\($0.rawValue)'" }.joined(separator: ", ")

    /// The statuses of background responses not yet ended, as SQL literals.
    static let liveResponse = BackgroundResponse.Status.allCases.filter { !$0.isTerminal }.map { "'\($0.rawValue)'" }
        .joined(separator: ", ")

    /// The statuses of background responses that ended, as SQL literals.
    static let endedResponse = BackgroundResponse.Status.allCases.filter(\.isTerminal).map { "'\($0.rawValue)'" }
        .joined(separator: ", ")

    /// A batch line's stored state once it ended: 1 succeeded, 2 failed (0 is waiting).
    static func state(succeeded: Bool) -> Int { succeeded ? 1 : 2 }

    /// A file's record from a row of ``fileColumns``.
    static func file(_ row: PostgresRow) throws -> StoredFile {
        let (id, apiKeyID, purpose, filename, bytes, lines, createdAt, kind, batchID) = try row.decode(
            (String, String, String, String, Int, Int, Date, String, String?).self)
        return StoredFile(
            id: id, apiKeyID: apiKeyID, purpose: purpose, filename: filename, bytes: bytes, lines: lines, createdAt: createdAt,
            kind: try known(StoredFile.Kind(rawValue: kind), "file kind", kind), batchID: batchID)
    }

    /// A line and its number from a row of `number, line`.
    static func numberedLine(_ row: PostgresRow) throws -> NumberedLine {
        let (number, line) = try row.decode((Int, Data?).self)
        return NumberedLine(number: number, line: line ?? Data())
    }

    /// A batch from a row of ``batchColumns``.
    static func batch(_ row: PostgresRow) throws -> Batch {
        let (
            id, apiKeyID, endpoint, inputFileID, windowSeconds, metadata, status,
            total, completed, failed, byNodes, byRoutes, createdAt, inProgressAt,
            expiresAt, finalizingAt, completedAt, failedAt, expiredAt, cancellingAt, cancelledAt,
            outputFileID, errorFileID, failures, priority
        ) = try row.decode(
            (
                String, String, String, String, Int, String?, String,
                Int, Int, Int, Int, Int, Date, Date?,
                Date, Date?, Date?, Date?, Date?, Date?, Date?,
                String?, String?, String, String
            ).self
        )
        var batch = Batch(
            id: id, apiKeyID: apiKeyID, endpoint: try known(Endpoint(rawValue: endpoint), "batch endpoint", endpoint),
            inputFileID: inputFileID, windowSeconds: windowSeconds, metadata: try metadata.map { try decoded($0) },
            createdAt: createdAt, priority: try known(PriorityClass(rawValue: priority), "batch class", priority))
        batch.status = try known(Batch.Status(rawValue: status), "batch status", status)
        batch.counts = Batch.Counts(total: total, completed: completed, failed: failed, byNodes: byNodes, byRoutes: byRoutes)
        batch.inProgressAt = inProgressAt
        batch.expiresAt = expiresAt
        batch.finalizingAt = finalizingAt
        batch.completedAt = completedAt
        batch.failedAt = failedAt
        batch.expiredAt = expiredAt
        batch.cancellingAt = cancellingAt
        batch.cancelledAt = cancelledAt
        batch.outputFileID = outputFileID
        batch.errorFileID = errorFileID
        batch.failures = try decoded(failures)
        return batch
    }

    /// A background response from a row of ``responseColumns``.
    static func response(_ row: PostgresRow) throws -> BackgroundResponse {
        let (id, apiKeyID, model, status, request, priority, createdAt, finishedAt, result, failure, runner, runnerUntil) =
            try row.decode((String, String, String, String, Data, String, Date, Date?, Data?, String?, String?, Date?).self)
        var response = BackgroundResponse(
            id: id, apiKeyID: apiKeyID, model: model, request: request,
            priority: try known(PriorityClass(rawValue: priority), "response class", priority), createdAt: createdAt)
        response.status = try known(BackgroundResponse.Status(rawValue: status), "response status", status)
        response.finishedAt = finishedAt
        response.result = result
        response.failure = try failure.map { try decoded($0) }
        response.runner = runner
        response.runnerUntil = runnerUntil
        return response
    }

    /// `value`, or a refusal naming what the database holds that this build does not know.
    static func known<T>(_ value: T?, _ what: String, _ stored: String) throws -> T {
        guard let value else { throw MizanError(.internalError, "Unknown \(what) in the database.", debugDetail: stored) }
        return value
    }

    /// A value from its stored JSON.
    static func decoded<T: Decodable>(_ json: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(json.utf8))
        } catch {
            throw MizanError(.storeUnavailable, "The database holds a batch record it cannot read.")
        }
    }

    /// A value as its stored JSON (`nil` stays `nil`).
    static func json<T: Encodable>(_ value: T?) -> String? {
        guard let value else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) }
    }
}

// Marker types naming this file's prepared statements.
private enum CreateFile {}
private enum FileByID {}
private enum AllFiles {}
private enum KeyFiles {}
private enum UploadLines {}
private enum WrittenLines {}
private enum DeleteFile {}
private enum CreateBatch {}
private enum BatchByID {}
private enum AllBatches {}
private enum KeyBatches {}
private enum ClaimBatches {}
private enum ReleaseClaims {}
private enum PendingLines {}
private enum FinishLines {}
private enum MoveBatch {}
private enum CreateResponse {}
private enum ResponseByID {}
private enum ClaimResponses {}
private enum MoveResponse {}
private enum PruneResponses {}
