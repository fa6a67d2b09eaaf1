import Foundation
import MizanCore

/// Durable storage of the Files and Batch APIs and of background responses: uploaded files and
/// their lines, batches with each line's result, and background responses with their answers.
///
/// Every batch and background response is run by one gateway instance at a time: an instance
/// claims it for a while (``claimBatches(runner:until:now:limit:)``) and renews its claim as it
/// works; a claim that lapses (its instance died) is taken by another instance or by the same
/// gateway started again. A line's result is written once
/// (``finishLines(batchID:_:now:)`` is conditional on the line not having ended), so that a
/// line is never in a batch's files twice whoever runs it.
public protocol BatchStore: Sendable {
    /// Stores an uploaded file and its lines.
    /// - Parameters:
    ///   - file: The file's record (kind `upload`).
    ///   - lines: Its lines, numbered from 1.
    /// - Returns: The stored record.
    func createFile(_ file: StoredFile, lines: [InputLine]) async throws -> StoredFile

    /// A file by id.
    /// - Parameters:
    ///   - id: The file.
    ///   - apiKeyID: Its owner: another key's file is `nil`; `nil` for any key (the admin API).
    func file(_ id: String, apiKeyID: String?) async throws -> StoredFile?

    /// Files, newest first.
    /// - Parameters:
    ///   - apiKeyID: Their owner; `nil` for every key's.
    ///   - after: Files older than this one (the last of a previous page).
    ///   - limit: The most returned.
    func files(apiKeyID: String?, after: String?, limit: Int) async throws -> [StoredFile]

    /// A file's lines in order, without line ends: an upload's lines as uploaded, an output or
    /// error file's results as written (by line number).
    /// - Parameters:
    ///   - file: The file.
    ///   - after: Lines after this number (0: from the first).
    ///   - limit: The most returned.
    /// - Returns: The lines with their numbers.
    func fileLines(_ file: StoredFile, after: Int, limit: Int) async throws -> [(number: Int, line: Data)]

    /// Deletes a file (an upload's lines with it).
    /// - Parameters:
    ///   - id: The file.
    ///   - apiKeyID: Its owner (`nil` for any key).
    /// - Returns: Whether it was there.
    /// - Throws: `MizanError` `conflict` for the input of a batch not yet ended.
    func deleteFile(_ id: String, apiKeyID: String?) async throws -> Bool

    /// Stores a new batch (`validating`) with one waiting line per line of its input file.
    /// - Parameter batch: The batch; its counts' total is set from the input.
    /// - Returns: The stored batch.
    /// - Throws: `MizanError` `notFound` when its input file is not its key's upload.
    func createBatch(_ batch: Batch) async throws -> Batch

    /// A batch by id.
    /// - Parameters:
    ///   - id: The batch.
    ///   - apiKeyID: Its owner (`nil` for any key).
    func batch(_ id: String, apiKeyID: String?) async throws -> Batch?

    /// Batches, newest first.
    /// - Parameters:
    ///   - apiKeyID: Their owner; `nil` for every key's.
    ///   - after: Batches older than this one.
    ///   - limit: The most returned.
    func batches(apiKeyID: String?, after: String?, limit: Int) async throws -> [Batch]

    /// Claims the batches not yet ended that no instance holds (or whose claim lapsed, or that
    /// `runner` holds: those it renews, first, whatever `limit`) for `runner` until `until`.
    /// - Returns: The batches now held by `runner`, oldest first.
    func claimBatches(runner: String, until: Date, now: Date, limit: Int) async throws -> [Batch]

    /// Ends `runner`'s claims (a gateway that stops hands its batches and responses on).
    func releaseClaims(runner: String) async throws

    /// The lines of a batch not yet ended, in order.
    /// - Parameters:
    ///   - batchID: The batch.
    ///   - after: Lines after this number.
    ///   - limit: The most returned.
    func pendingLines(batchID: String, after: Int, limit: Int) async throws -> [InputLine]

    /// Records how lines ended, each only while it has not ended yet, and counts them in the
    /// batch, in one write.
    /// - Returns: How many were recorded (a line that had ended is skipped).
    func finishLines(batchID: String, _ results: [LineResult], now: Date) async throws -> Int

    /// Moves a batch to `status` when it is in one of `from`, stamping the status's time. A
    /// terminal status also records its output file (when any line succeeded) and error file
    /// (when any failed), in the same write.
    /// - Parameters:
    ///   - id: The batch.
    ///   - status: Its new status.
    ///   - from: The statuses it may move from.
    ///   - failure: Why, for `failed` or a batch stopped early.
    ///   - now: The current time.
    /// - Returns: The batch after the write, or `nil` when it was in none of `from` (or is gone).
    func moveBatch(_ id: String, to status: Batch.Status, from: [Batch.Status], failure: Batch.Failure?, now: Date) async throws
        -> Batch?

    /// Stores a new background response (`queued`).
    func createResponse(_ response: BackgroundResponse) async throws

    /// A background response by id.
    /// - Parameters:
    ///   - id: The response.
    ///   - apiKeyID: Its owner (`nil` for any key).
    func response(_ id: String, apiKeyID: String?) async throws -> BackgroundResponse?

    /// Claims background responses not yet ended as ``claimBatches(runner:until:now:limit:)``
    /// claims batches.
    func claimResponses(runner: String, until: Date, now: Date, limit: Int) async throws -> [BackgroundResponse]

    /// Moves a background response to `status` when it is in one of `from`, with its answer or
    /// failure; a terminal status stamps its end.
    /// - Returns: The response after the write, or `nil` when it was in none of `from`.
    func moveResponse(
        _ id: String, to status: BackgroundResponse.Status, from: [BackgroundResponse.Status], result: Data?,
        failure: Batch.Failure?, now: Date
    ) async throws -> BackgroundResponse?

    /// Deletes background responses that ended before `endedBefore` (their retention passed).
    /// - Returns: How many.
    func pruneResponses(endedBefore: Date) async throws -> Int
}

/// The refusals every ``BatchStore`` throws alike.
public enum BatchStoreErrors {
    /// A batch's input file is not its key's upload.
    public static func noInput(_ id: String) -> MizanError {
        MizanError(.notFound, "No file with id '\(SafeText.escaped(id))' to use as a batch's input.")
    }

    /// A file is the input of a batch not yet ended.
    public static func fileInUse(_ id: String) -> MizanError {
        MizanError(.conflict, "The file '\(SafeText.escaped(id))' is the input of a batch that has not ended; cancel the batch first.")
    }
}
