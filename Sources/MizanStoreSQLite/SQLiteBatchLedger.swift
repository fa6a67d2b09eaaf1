import Foundation
import MizanCore
import MizanStore

/// The Files and Batch APIs and the background responses of an SQLite file: uploaded files and
/// their lines, batches with one row per line (waiting, or ended with its result), the output and
/// error files a batch records as it ends, and background responses with their answers.
///
/// An output or error file holds no lines of its own: its lines are its batch's results of one
/// kind, read in line order. A line's result is written only while the line waits, and counted in
/// its batch in the same transaction, so that no line is in a batch's files twice.
package final class SQLiteBatchLedger: Sendable {
    private let connections: SQLiteConnections

    /// A batch line's `state`: waiting.
    static let waiting = 0
    /// A batch line's `state`: answered (in the output file).
    static let succeeded = 1
    /// A batch line's `state`: failed (in the error file).
    static let failed = 2

    /// The statuses of batches a runner works on, as SQL (the text of the live batches' index).
    private static let liveBatches = "status IN ('validating', 'in_progress', 'finalizing', 'cancelling')"
    /// The statuses of background responses not yet ended, as SQL.
    private static let liveResponses = "status IN ('queued', 'in_progress')"

    /// - Parameter connections: The file's connections.
    package init(connections: SQLiteConnections) {
        self.connections = connections
    }

    // MARK: Files

    /// Stores an uploaded file and its lines (see `BatchStore`).
    /// - Throws: `MizanError` `conflict` when a file with its id exists.
    package func createFile(_ file: StoredFile, lines: [InputLine]) async throws -> StoredFile {
        try await connections.write { db in
            let rows = try db.query(
                """
                INSERT INTO mizan_files (id, api_key_id, purpose, filename, bytes, lines, created_at, kind, batch_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING
                RETURNING \(Rows.fileColumns)
                """,
                [
                    .text(file.id), .text(file.apiKeyID), .text(file.purpose), .text(file.filename), .integer(file.bytes),
                    .integer(file.lines), Rows.date(file.createdAt), .text(file.kind.rawValue), Rows.text(file.batchID),
                ]
            )
            guard let created = try rows.first.map(Rows.file) else { throw MizanError(.conflict, "A file with id \(file.id) exists.") }
            for line in lines {
                try db.query(
                    "INSERT INTO mizan_file_lines (file_id, number, custom_id, url, raw) VALUES (?, ?, ?, ?, ?)",
                    [.text(file.id), .integer(line.number), .text(line.customID), .text(line.url), .blob(line.raw)]
                )
            }
            return (created, [])
        }
    }

    /// A file by id, of `apiKeyID` (any key's when `nil`).
    package func file(_ id: String, apiKeyID: String?) async throws -> StoredFile? {
        try await connections.read(
            "SELECT \(Rows.fileColumns) FROM mizan_files WHERE id = ?1 AND (?2 IS NULL OR api_key_id = ?2)",
            [.text(id), Rows.text(apiKeyID)]
        ).first.map(Rows.file)
    }

    /// Files, newest first, older than `after`.
    package func files(apiKeyID: String?, after: String?, limit: Int) async throws -> [StoredFile] {
        let (sql, binds) = Self.page(Rows.fileColumns, from: "mizan_files", apiKeyID: apiKeyID, after: after, limit: limit)
        return try await connections.read(sql, binds).map(Rows.file)
    }

    /// A file's lines in order after `after`: an upload's as uploaded, an output or error file's
    /// from its batch's results of its kind.
    package func fileLines(_ file: StoredFile, after: Int, limit: Int) async throws -> [(number: Int, line: Data)] {
        let rows: [SQLRow]
        switch file.kind {
        case .upload:
            rows = try await connections.read(
                "SELECT number, raw AS line FROM mizan_file_lines WHERE file_id = ? AND number > ? ORDER BY number LIMIT ?",
                [.text(file.id), .integer(after), .integer(max(0, limit))]
            )
        case .output, .error:
            guard let batchID = file.batchID else { return [] }
            rows = try await connections.read(
                "SELECT number, line FROM mizan_batch_lines WHERE batch_id = ? AND state = ? AND number > ? ORDER BY number LIMIT ?",
                [.text(batchID), .integer(file.kind == .output ? Self.succeeded : Self.failed), .integer(after), .integer(max(0, limit))]
            )
        }
        return try rows.map { row in
            guard let number = row.column("number")?.integer else { throw Rows.corrupt("number") }
            return (number, Rows.data(row, "line") ?? Data())
        }
    }

    /// Deletes a file and an upload's lines (see `BatchStore`).
    /// - Throws: `MizanError` `conflict` for the input of a batch not yet ended.
    package func deleteFile(_ id: String, apiKeyID: String?) async throws -> Bool {
        try await connections.write { db in
            let found = try db.query(
                "SELECT 1 FROM mizan_files WHERE id = ?1 AND (?2 IS NULL OR api_key_id = ?2)", [.text(id), Rows.text(apiKeyID)])
            guard !found.isEmpty else { return (false, []) }
            let readers = try db.query("SELECT 1 FROM mizan_batches WHERE input_file_id = ? AND \(Self.liveBatches) LIMIT 1", [.text(id)])
            guard readers.isEmpty else { throw BatchStoreErrors.fileInUse(id) }
            try db.query("DELETE FROM mizan_file_lines WHERE file_id = ?", [.text(id)])
            try db.query("DELETE FROM mizan_files WHERE id = ?", [.text(id)])
            return (true, [])
        }
    }

    // MARK: Batches

    /// Stores a new batch with one waiting line per line of its input (see `BatchStore`).
    /// - Throws: `MizanError` `notFound` when its input is not its key's upload, `conflict` when
    ///   a batch with its id exists.
    package func createBatch(_ batch: Batch) async throws -> Batch {
        try await connections.write { db in
            let input = try db.query(
                """
                SELECT (SELECT count(*) FROM mizan_file_lines WHERE file_id = mizan_files.id) AS total
                FROM mizan_files WHERE id = ? AND api_key_id = ? AND kind = 'upload'
                """,
                [.text(batch.inputFileID), .text(batch.apiKeyID)]
            )
            guard let total = input.first?.column("total")?.integer else { throw BatchStoreErrors.noInput(batch.inputFileID) }
            var batch = batch
            batch.counts.total = total
            let inserted = try db.query(
                """
                INSERT INTO mizan_batches (\(Rows.batchColumns), runner, runner_until)
                VALUES (\(Array(repeating: "?", count: Rows.batchNames.count).joined(separator: ", ")), NULL, NULL)
                ON CONFLICT (id) DO NOTHING
                RETURNING id
                """,
                Rows.batchBinds(batch)
            )
            guard !inserted.isEmpty else { throw MizanError(.conflict, "A batch with id \(batch.id) exists.") }
            try db.query(
                "INSERT INTO mizan_batch_lines (batch_id, number, state) SELECT ?, number, ? FROM mizan_file_lines WHERE file_id = ?",
                [.text(batch.id), .integer(Self.waiting), .text(batch.inputFileID)]
            )
            return (batch, [])
        }
    }

    /// A batch by id, of `apiKeyID` (any key's when `nil`).
    package func batch(_ id: String, apiKeyID: String?) async throws -> Batch? {
        try await connections.read(
            "SELECT \(Rows.batchColumns) FROM mizan_batches WHERE id = ?1 AND (?2 IS NULL OR api_key_id = ?2)",
            [.text(id), Rows.text(apiKeyID)]
        ).first.map(Rows.batch)
    }

    /// Batches, newest first, older than `after`.
    package func batches(apiKeyID: String?, after: String?, limit: Int) async throws -> [Batch] {
        let (sql, binds) = Self.page(Rows.batchColumns, from: "mizan_batches", apiKeyID: apiKeyID, after: after, limit: limit)
        return try await connections.read(sql, binds).map(Rows.batch)
    }

    /// Claims for `runner` until `until` the live batches nobody else holds at `now`, renewing
    /// its own (see `BatchStore`).
    /// - Returns: The batches it holds, oldest first.
    package func claimBatches(runner: String, until: Date, now: Date, limit: Int) async throws -> [Batch] {
        let rows = try await connections.writeOne(
            """
            UPDATE mizan_batches SET runner = ?1, runner_until = ?2
            WHERE id IN (
                SELECT id FROM mizan_batches
                WHERE \(Self.liveBatches) AND (runner IS NULL OR runner = ?1 OR runner_until <= ?3)
                ORDER BY (runner IS ?1) DESC, id LIMIT ?4
            )
            RETURNING \(Rows.batchColumns)
            """,
            [.text(runner), Rows.date(until), Rows.date(now), .integer(max(0, limit))]
        )
        return try rows.map(Rows.batch).sorted { $0.id < $1.id }
    }

    /// Ends `runner`'s claims on batches and background responses.
    package func releaseClaims(runner: String) async throws {
        try await connections.write { db in
            try db.query("UPDATE mizan_batches SET runner = NULL, runner_until = NULL WHERE runner = ?", [.text(runner)])
            try db.query("UPDATE mizan_responses SET runner = NULL, runner_until = NULL WHERE runner = ?", [.text(runner)])
            return ((), [])
        }
    }

    /// A batch's waiting lines after `after`, in order, as its input holds them.
    package func pendingLines(batchID: String, after: Int, limit: Int) async throws -> [InputLine] {
        let rows = try await connections.read(
            """
            SELECT f.number, f.custom_id, f.url, f.raw
            FROM mizan_batch_lines AS l
            JOIN mizan_file_lines AS f ON f.file_id = (SELECT input_file_id FROM mizan_batches WHERE id = ?1) AND f.number = l.number
            WHERE l.batch_id = ?1 AND l.state = ?2 AND l.number > ?3
            ORDER BY l.number LIMIT ?4
            """,
            [.text(batchID), .integer(Self.waiting), .integer(after), .integer(max(0, limit))]
        )
        return try rows.map { row in
            guard let number = row.column("number")?.integer else { throw Rows.corrupt("number") }
            return InputLine(
                number: number, customID: try Rows.string(row, "custom_id"), url: try Rows.string(row, "url"),
                raw: Rows.data(row, "raw") ?? Data())
        }
    }

    /// Records each result whose line still waits, and counts those in the batch, in one transaction.
    /// - Returns: How many were recorded.
    package func finishLines(batchID: String, _ results: [LineResult], now: Date) async throws -> Int {
        guard !results.isEmpty else { return 0 }
        return try await connections.write { db in
            var counted = Batch.Counts()
            var recorded = 0
            for result in results {
                let rows = try db.query(
                    """
                    UPDATE mizan_batch_lines SET state = ?, place = ?, line = ?
                    WHERE batch_id = ? AND number = ? AND state = ?
                    RETURNING number
                    """,
                    [
                        .integer(result.succeeded ? Self.succeeded : Self.failed), .text(result.place.rawValue), .blob(result.line),
                        .text(batchID), .integer(result.number), .integer(Self.waiting),
                    ]
                )
                guard !rows.isEmpty else { continue }
                counted.count(result)
                recorded += 1
            }
            if recorded > 0 {
                try db.query(
                    """
                    UPDATE mizan_batches SET completed = completed + ?, failed = failed + ?, by_nodes = by_nodes + ?,
                        by_routes = by_routes + ?
                    WHERE id = ?
                    """,
                    [
                        .integer(counted.completed), .integer(counted.failed), .integer(counted.byNodes), .integer(counted.byRoutes),
                        .text(batchID),
                    ]
                )
            }
            return (recorded, [])
        }
    }

    /// Moves a batch to `status` when it is in one of `from` (see `BatchStore`); a terminal
    /// status records its output and error files, counted from its lines, and ends its claim.
    /// - Returns: The batch after the move, or `nil` when it was in none of `from` (or is gone).
    package func moveBatch(_ id: String, to status: Batch.Status, from: [Batch.Status], failure: Batch.Failure?, now: Date) async throws
        -> Batch?
    {
        try await connections.write { db in
            let current = try db.query("SELECT \(Rows.batchColumns) FROM mizan_batches WHERE id = ?", [.text(id)]).first.map(Rows.batch)
            guard let current, from.contains(current.status) else { return (nil, []) }
            var batch = current
            batch.move(to: status, failure: failure, now: now)
            if status.isTerminal {
                batch.outputFileID = try Self.recordFile(of: batch, kind: .output, now: now, on: db) ?? batch.outputFileID
                batch.errorFileID = try Self.recordFile(of: batch, kind: .error, now: now, on: db) ?? batch.errorFileID
            }
            let rows = try db.query(
                """
                UPDATE mizan_batches SET status = ?1, in_progress_at = ?2, finalizing_at = ?3, completed_at = ?4, failed_at = ?5,
                    expired_at = ?6, cancelling_at = ?7, cancelled_at = ?8, output_file_id = ?9, error_file_id = ?10, failures = ?11,
                    runner = CASE WHEN ?12 THEN NULL ELSE runner END, runner_until = CASE WHEN ?12 THEN NULL ELSE runner_until END
                WHERE id = ?13 AND status = ?14
                RETURNING \(Rows.batchColumns)
                """,
                [
                    .text(batch.status.rawValue), Rows.date(batch.inProgressAt), Rows.date(batch.finalizingAt),
                    Rows.date(batch.completedAt), Rows.date(batch.failedAt), Rows.date(batch.expiredAt), Rows.date(batch.cancellingAt),
                    Rows.date(batch.cancelledAt),
                    Rows.text(batch.outputFileID), Rows.text(batch.errorFileID), Rows.json(batch.failures),
                    .integer(status.isTerminal ? 1 : 0), .text(id), .text(current.status.rawValue),
                ]
            )
            // The row was read in this transaction: it is there, in the status read.
            guard let moved = try rows.first.map(Rows.batch) else { throw Rows.corrupt("status") }
            return (moved, [])
        }
    }

    /// Records the output (or error) file of an ending batch when any of its lines succeeded (or
    /// failed): its lines and bytes (each line and its line end) counted from the batch's lines.
    /// - Returns: The file's id, or `nil` when no line ended that way.
    private static func recordFile(of batch: Batch, kind: StoredFile.Kind, now: Date, on db: Database) throws -> String? {
        let file = StoredFile.written(by: batch, kind: kind, lines: 0, bytes: 0, now: now)
        let rows = try db.query(
            """
            INSERT INTO mizan_files (id, api_key_id, purpose, filename, bytes, lines, created_at, kind, batch_id)
            SELECT ?, ?, ?, ?, size, n, ?, ?, ?
            FROM (SELECT count(*) AS n, coalesce(sum(length(line) + 1), 0) AS size FROM mizan_batch_lines WHERE batch_id = ? AND state = ?)
            WHERE n > 0
            RETURNING id
            """,
            [
                .text(file.id), .text(file.apiKeyID), .text(file.purpose), .text(file.filename), Rows.date(file.createdAt),
                .text(kind.rawValue), .text(batch.id), .text(batch.id), .integer(kind == .output ? succeeded : failed),
            ]
        )
        return rows.first?.column("id")?.string
    }

    // MARK: Background responses

    /// Stores a new background response.
    /// - Throws: `MizanError` `conflict` when one with its id exists.
    package func createResponse(_ response: BackgroundResponse) async throws {
        let rows = try await connections.writeOne(
            """
            INSERT INTO mizan_responses (\(Rows.responseColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO NOTHING
            RETURNING id
            """,
            Rows.responseBinds(response)
        )
        guard !rows.isEmpty else { throw MizanError(.conflict, "A response with id \(response.id) exists.") }
    }

    /// A background response by id, of `apiKeyID` (any key's when `nil`).
    package func response(_ id: String, apiKeyID: String?) async throws -> BackgroundResponse? {
        try await connections.read(
            "SELECT \(Rows.responseColumns) FROM mizan_responses WHERE id = ?1 AND (?2 IS NULL OR api_key_id = ?2)",
            [.text(id), Rows.text(apiKeyID)]
        ).first.map(Rows.response)
    }

    /// Claims background responses not yet ended as ``claimBatches(runner:until:now:limit:)``
    /// claims batches.
    /// - Returns: The responses `runner` holds, oldest first.
    package func claimResponses(runner: String, until: Date, now: Date, limit: Int) async throws -> [BackgroundResponse] {
        let rows = try await connections.writeOne(
            """
            UPDATE mizan_responses SET runner = ?1, runner_until = ?2
            WHERE id IN (
                SELECT id FROM mizan_responses
                WHERE \(Self.liveResponses) AND (runner IS NULL OR runner = ?1 OR runner_until <= ?3)
                ORDER BY (runner IS ?1) DESC, id LIMIT ?4
            )
            RETURNING \(Rows.responseColumns)
            """,
            [.text(runner), Rows.date(until), Rows.date(now), .integer(max(0, limit))]
        )
        return try rows.map(Rows.response).sorted { $0.id < $1.id }
    }

    /// Moves a background response to `status` when it is in one of `from`, with its answer or
    /// failure; a terminal status stamps its end and ends its claim.
    /// - Returns: The response after the move, or `nil` when it was in none of `from` (or is gone).
    package func moveResponse(
        _ id: String, to status: BackgroundResponse.Status, from: [BackgroundResponse.Status], result: Data?,
        failure: Batch.Failure?, now: Date
    ) async throws -> BackgroundResponse? {
        try await connections.write(short: true) { db in
            let current = try db.query("SELECT \(Rows.responseColumns) FROM mizan_responses WHERE id = ?", [.text(id)]).first
                .map(Rows.response)
            guard let current, from.contains(current.status) else { return (nil, []) }
            var response = current
            response.move(to: status, result: result, failure: failure, now: now)
            let rows = try db.query(
                """
                UPDATE mizan_responses SET status = ?, finished_at = ?, result = ?, failure = ?, runner = ?, runner_until = ?
                WHERE id = ? AND status = ?
                RETURNING \(Rows.responseColumns)
                """,
                [
                    .text(response.status.rawValue), Rows.date(response.finishedAt), Rows.blob(response.result),
                    response.failure.map { Rows.json($0) } ?? .null, Rows.text(response.runner), Rows.date(response.runnerUntil), .text(id),
                    .text(current.status.rawValue),
                ]
            )
            // The row was read in this transaction: it is there, in the status read.
            guard let moved = try rows.first.map(Rows.response) else { throw Rows.corrupt("status") }
            return (moved, [])
        }
    }

    /// Deletes the background responses that ended before `endedBefore`.
    /// - Returns: How many.
    package func pruneResponses(endedBefore: Date) async throws -> Int {
        try await connections.write(single: true) { db in
            try db.query(
                "DELETE FROM mizan_responses WHERE finished_at < ? AND status IN ('completed', 'failed', 'cancelled')",
                [Rows.date(endedBefore)])
            return (db.changes, [])
        }
    }

    // MARK: Pages

    /// A page of a table listed newest first (ids are time-ordered): `apiKeyID`'s rows (every
    /// key's when `nil`) older than `after`.
    private static func page(_ columns: String, from table: String, apiKeyID: String?, after: String?, limit: Int) -> (
        String, [SQLValue]
    ) {
        var conditions: [String] = []
        var binds: [SQLValue] = []
        if let apiKeyID {
            conditions.append("api_key_id = ?")
            binds.append(.text(apiKeyID))
        }
        if let after {
            conditions.append("id < ?")
            binds.append(.text(after))
        }
        let filter = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        return ("SELECT \(columns) FROM \(table)\(filter) ORDER BY id DESC LIMIT ?", binds + [.integer(max(0, limit))])
    }
}

extension Rows {
    /// A file's columns, as ``file(_:)`` reads them.
    static let fileColumns = "id, api_key_id, purpose, filename, bytes, lines, created_at, kind, batch_id"

    /// A batch's columns (all but its claim), in ``batchBinds(_:)`` order.
    static let batchNames = [
        "id", "api_key_id", "endpoint", "input_file_id", "window_seconds", "metadata", "status", "total", "completed", "failed",
        "by_nodes", "by_routes", "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at", "failed_at",
        "expired_at", "cancelling_at", "cancelled_at", "output_file_id", "error_file_id", "failures", "priority",
    ]

    /// ``batchNames`` as a statement lists them.
    static let batchColumns = batchNames.joined(separator: ", ")

    /// A background response's columns, in ``responseBinds(_:)`` order.
    static let responseColumns =
        "id, api_key_id, model, status, request, priority, created_at, finished_at, result, failure, runner, runner_until"

    /// The binds of a batch's columns, in ``batchNames`` order.
    static func batchBinds(_ batch: Batch) -> [SQLValue] {
        [
            .text(batch.id), .text(batch.apiKeyID), .text(batch.endpoint.rawValue), .text(batch.inputFileID),
            .integer(batch.windowSeconds), batch.metadata.map { json($0) } ?? .null, .text(batch.status.rawValue),
            .integer(batch.counts.total),
            .integer(batch.counts.completed), .integer(batch.counts.failed), .integer(batch.counts.byNodes),
            .integer(batch.counts.byRoutes), date(batch.createdAt), date(batch.inProgressAt), date(batch.expiresAt),
            date(batch.finalizingAt), date(batch.completedAt), date(batch.failedAt), date(batch.expiredAt), date(batch.cancellingAt),
            date(batch.cancelledAt), text(batch.outputFileID), text(batch.errorFileID), json(batch.failures),
            .text(batch.priority.rawValue),
        ]
    }

    /// The binds of a background response's columns, in ``responseColumns`` order.
    static func responseBinds(_ response: BackgroundResponse) -> [SQLValue] {
        [
            .text(response.id), .text(response.apiKeyID), .text(response.model), .text(response.status.rawValue),
            .blob(response.request), .text(response.priority.rawValue), date(response.createdAt), date(response.finishedAt),
            blob(response.result), response.failure.map { json($0) } ?? .null, text(response.runner), date(response.runnerUntil),
        ]
    }

    /// A file from its row (``fileColumns``).
    static func file(_ row: SQLRow) throws -> StoredFile {
        guard let kind = StoredFile.Kind(rawValue: try string(row, "kind")) else { throw corrupt("kind") }
        return StoredFile(
            id: try string(row, "id"), apiKeyID: try string(row, "api_key_id"), purpose: try string(row, "purpose"),
            filename: try string(row, "filename"), bytes: row.column("bytes")?.integer ?? 0, lines: row.column("lines")?.integer ?? 0,
            createdAt: try requiredDate(row, "created_at"), kind: kind, batchID: row.column("batch_id")?.string)
    }

    /// A batch from its row (``batchColumns``).
    static func batch(_ row: SQLRow) throws -> Batch {
        guard let endpoint = Endpoint(rawValue: try string(row, "endpoint")) else { throw corrupt("endpoint") }
        guard let status = Batch.Status(rawValue: try string(row, "status")) else { throw corrupt("status") }
        guard let priority = PriorityClass(rawValue: try string(row, "priority")) else { throw corrupt("priority") }
        var batch = Batch(
            id: try string(row, "id"), apiKeyID: try string(row, "api_key_id"), endpoint: endpoint,
            inputFileID: try string(row, "input_file_id"), windowSeconds: row.column("window_seconds")?.integer ?? 0,
            metadata: try decoded([String: String].self, row, "metadata"), createdAt: try requiredDate(row, "created_at"),
            priority: priority)
        batch.status = status
        batch.counts = Batch.Counts(
            total: row.column("total")?.integer ?? 0, completed: row.column("completed")?.integer ?? 0,
            failed: row.column("failed")?.integer ?? 0, byNodes: row.column("by_nodes")?.integer ?? 0,
            byRoutes: row.column("by_routes")?.integer ?? 0)
        batch.inProgressAt = date(row, "in_progress_at")
        batch.expiresAt = try requiredDate(row, "expires_at")
        batch.finalizingAt = date(row, "finalizing_at")
        batch.completedAt = date(row, "completed_at")
        batch.failedAt = date(row, "failed_at")
        batch.expiredAt = date(row, "expired_at")
        batch.cancellingAt = date(row, "cancelling_at")
        batch.cancelledAt = date(row, "cancelled_at")
        batch.outputFileID = row.column("output_file_id")?.string
        batch.errorFileID = row.column("error_file_id")?.string
        batch.failures = try decoded([Batch.Failure].self, row, "failures") ?? []
        return batch
    }

    /// A background response from its row (``responseColumns``).
    static func response(_ row: SQLRow) throws -> BackgroundResponse {
        guard let status = BackgroundResponse.Status(rawValue: try string(row, "status")) else { throw corrupt("status") }
        guard let priority = PriorityClass(rawValue: try string(row, "priority")) else { throw corrupt("priority") }
        guard let request = data(row, "request") else { throw corrupt("request") }
        var response = BackgroundResponse(
            id: try string(row, "id"), apiKeyID: try string(row, "api_key_id"), model: try string(row, "model"), request: request,
            priority: priority, createdAt: try requiredDate(row, "created_at"))
        response.status = status
        response.finishedAt = date(row, "finished_at")
        response.result = data(row, "result")
        response.failure = try decoded(Batch.Failure.self, row, "failure")
        response.runner = row.column("runner")?.string
        response.runnerUntil = date(row, "runner_until")
        return response
    }

    /// A column's JSON text decoded as `type` (`nil` when NULL).
    private static func decoded<T: Decodable>(_ type: T.Type, _ row: SQLRow, _ name: String) throws -> T? {
        guard let text = row.column(name)?.string else { return nil }
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw corrupt(name)
        }
    }
}
