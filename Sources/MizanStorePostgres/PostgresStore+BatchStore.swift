import Foundation
import MizanCore
import MizanStore

/// Files, batches and background responses, kept by the ``PostgresBatchLedger``.
extension PostgresStore: BatchStore {
    /// Stores an uploaded file and its lines.
    public func createFile(_ file: StoredFile, lines: [InputLine]) async throws -> StoredFile {
        try await batchLedger.createFile(file, lines: lines)
    }

    /// A file by id, of `apiKeyID` unless `nil`.
    public func file(_ id: String, apiKeyID: String?) async throws -> StoredFile? {
        try await batchLedger.file(id, apiKeyID: apiKeyID)
    }

    /// Files, newest first.
    public func files(apiKeyID: String?, after: String?, limit: Int) async throws -> [StoredFile] {
        try await batchLedger.files(apiKeyID: apiKeyID, after: after, limit: limit)
    }

    /// A file's lines in order, without line ends.
    public func fileLines(_ file: StoredFile, after: Int, limit: Int) async throws -> [(number: Int, line: Data)] {
        try await batchLedger.fileLines(file, after: after, limit: limit)
    }

    /// Deletes a file (an upload's lines with it).
    public func deleteFile(_ id: String, apiKeyID: String?) async throws -> Bool {
        try await batchLedger.deleteFile(id, apiKeyID: apiKeyID)
    }

    /// Stores a new batch with one waiting line per line of its input file.
    public func createBatch(_ batch: Batch) async throws -> Batch {
        try await batchLedger.createBatch(batch)
    }

    /// A batch by id, of `apiKeyID` unless `nil`.
    public func batch(_ id: String, apiKeyID: String?) async throws -> Batch? {
        try await batchLedger.batch(id, apiKeyID: apiKeyID)
    }

    /// Batches, newest first.
    public func batches(apiKeyID: String?, after: String?, limit: Int) async throws -> [Batch] {
        try await batchLedger.batches(apiKeyID: apiKeyID, after: after, limit: limit)
    }

    /// Claims the live batches no other instance holds for `runner` until `until`.
    public func claimBatches(runner: String, until: Date, now: Date, limit: Int) async throws -> [Batch] {
        try await batchLedger.claimBatches(runner: runner, until: until, now: now, limit: limit)
    }

    /// Ends `runner`'s claims on batches and background responses.
    public func releaseClaims(runner: String) async throws {
        try await batchLedger.releaseClaims(runner: runner)
    }

    /// The lines of a batch not yet ended, in order.
    public func pendingLines(batchID: String, after: Int, limit: Int) async throws -> [InputLine] {
        try await batchLedger.pendingLines(batchID: batchID, after: after, limit: limit)
    }

    /// Records how lines ended, each only while it has not ended yet, and counts them in the batch.
    public func finishLines(batchID: String, _ results: [LineResult], now: Date) async throws -> Int {
        try await batchLedger.finishLines(batchID: batchID, results, now: now)
    }

    /// Moves a batch to `status` when it is in one of `from`; a terminal status records its files.
    public func moveBatch(_ id: String, to status: Batch.Status, from: [Batch.Status], failure: Batch.Failure?, now: Date) async throws
        -> Batch?
    {
        try await batchLedger.moveBatch(id, to: status, from: from, failure: failure, now: now)
    }

    /// Stores a new background response.
    public func createResponse(_ response: BackgroundResponse) async throws {
        try await batchLedger.createResponse(response)
    }

    /// A background response by id, of `apiKeyID` unless `nil`.
    public func response(_ id: String, apiKeyID: String?) async throws -> BackgroundResponse? {
        try await batchLedger.response(id, apiKeyID: apiKeyID)
    }

    /// Claims background responses not yet ended for `runner` until `until`.
    public func claimResponses(runner: String, until: Date, now: Date, limit: Int) async throws -> [BackgroundResponse] {
        try await batchLedger.claimResponses(runner: runner, until: until, now: now, limit: limit)
    }

    /// Moves a background response to `status` when it is in one of `from`.
    public func moveResponse(
        _ id: String, to status: BackgroundResponse.Status, from: [BackgroundResponse.Status], result: Data?,
        failure: Batch.Failure?, now: Date
    ) async throws -> BackgroundResponse? {
        try await batchLedger.moveResponse(id, to: status, from: from, result: result, failure: failure, now: now)
    }

    /// Deletes background responses that ended before `endedBefore`.
    public func pruneResponses(endedBefore: Date) async throws -> Int {
        try await batchLedger.pruneResponses(endedBefore: endedBefore)
    }
}
