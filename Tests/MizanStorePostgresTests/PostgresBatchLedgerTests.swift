import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStore
import Testing

@testable import MizanStorePostgres

@Suite("PostgreSQL batch ledger", .timeLimit(.minutes(2)))
struct PostgresBatchLedgerTests {
    /// A fixed instant, so that stamps compare exactly.
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// A ledger on a fresh, migrated database, its statements counted.
    func withLedger(_ test: @Sendable (PostgresBatchLedger, StatementCounter) async throws -> Void) async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let statements = StatementCounter()
            let context = makeContext(client, statements: statements)
            try await context.client.schema.migrate()
            try await test(PostgresBatchLedger(context: context), statements)
        }
    }

    /// `seconds` after ``t0``.
    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    /// Uploads a file of `count` lines for `key`, made at `seconds`.
    func upload(_ ledger: PostgresBatchLedger, key: String, at seconds: Double, lines count: Int) async throws -> (StoredFile, [InputLine])
    {
        let lines = (1...count).map { number in
            InputLine(
                number: number, customID: "c-\(number)", url: "/v1/chat/completions", raw: Data(#"{"custom_id":"c-\#(number)"}"#.utf8))
        }
        let file = StoredFile(
            id: "file-" + BatchIDs.hex(at: at(seconds)), apiKeyID: key, purpose: "batch", filename: "in.jsonl",
            bytes: lines.reduce(0) { $0 + $1.raw.count + 1 }, lines: count, createdAt: at(seconds))
        return (try await ledger.createFile(file, lines: lines), lines)
    }

    /// A batch of `file`'s key reading it, made at `seconds`.
    func newBatch(_ file: StoredFile, at seconds: Double) -> Batch {
        Batch(
            id: "batch_" + BatchIDs.hex(at: at(seconds)), apiKeyID: file.apiKeyID, endpoint: .chatCompletions, inputFileID: file.id,
            metadata: ["run": "\(seconds)"], createdAt: at(seconds))
    }

    /// How line `number` ended.
    func result(_ number: Int, _ succeeded: Bool, _ place: LineResult.Place = .node) -> LineResult {
        LineResult(number: number, succeeded: succeeded, line: Data("{\"n\":\(number),\"ok\":\(succeeded)}".utf8), place: place)
    }

    @Test func filesAreListedNewestFirstByOwnerInPages() async throws {
        try await withLedger { ledger, statements in
            let (first, lines) = try await upload(ledger, key: "a", at: 1, lines: 3)
            let (second, _) = try await upload(ledger, key: "a", at: 2, lines: 1)
            let (theirs, _) = try await upload(ledger, key: "b", at: 3, lines: 1)
            #expect(statements.value == 3, "an upload and its lines are one statement")
            #expect(try await ledger.file(first.id, apiKeyID: "a") == first)
            #expect(try await ledger.file(first.id, apiKeyID: "b") == nil, "another key's file is not seen")
            #expect(try await ledger.files(apiKeyID: "a", after: nil, limit: 10).map(\.id) == [second.id, first.id])
            #expect(try await ledger.files(apiKeyID: "a", after: second.id, limit: 10).map(\.id) == [first.id])
            #expect(try await ledger.files(apiKeyID: nil, after: nil, limit: 2).map(\.id) == [theirs.id, second.id])
            let read = try await ledger.fileLines(first, after: 1, limit: 5)
            #expect(read.map(\.number) == [2, 3] && read.map(\.line) == [lines[1].raw, lines[2].raw])
            #expect(try await ledger.deleteFile(theirs.id, apiKeyID: "a") == false, "only its owner deletes it")
            #expect(try await ledger.deleteFile(theirs.id, apiKeyID: "b"))
            #expect(try await ledger.files(apiKeyID: "b", after: nil, limit: 10).isEmpty)
        }
    }

    @Test func aBatchRunsOnceAndWritesItsFiles() async throws {
        try await withLedger { ledger, statements in
            let (file, lines) = try await upload(ledger, key: "a", at: 1, lines: 4)
            let created = try await ledger.createBatch(newBatch(file, at: 2))
            #expect(created.counts.total == 4 && created.status == .validating && created.metadata == ["run": "2.0"])
            #expect(await mizanCode { try await ledger.deleteFile(file.id, apiKeyID: "a") } == .conflict, "a live batch's input stays")

            // Two runners claim at once: one holds the batch.
            async let one = ledger.claimBatches(runner: "r1", until: at(100), now: at(10), limit: 10)
            async let two = ledger.claimBatches(runner: "r2", until: at(100), now: at(10), limit: 10)
            let (r1, r2) = try await (one, two)
            #expect(r1.count + r2.count == 1, "exactly one runner holds it: \(r1.map(\.id)), \(r2.map(\.id))")
            let holder = r1.isEmpty ? "r2" : "r1"
            #expect(try await ledger.claimBatches(runner: holder, until: at(200), now: at(20), limit: 10).map(\.id) == [created.id])

            let pending = try await ledger.pendingLines(batchID: created.id, after: 0, limit: 10)
            #expect(pending == lines, "every line waits, as uploaded")
            _ = try await ledger.moveBatch(created.id, to: .inProgress, from: [.validating], failure: nil, now: at(21))

            let before = statements.value
            let recorded = try await ledger.finishLines(
                batchID: created.id, [result(3, true, .route), result(1, true), result(2, false, .none)], now: at(30))
            #expect(recorded == 3 && statements.value == before + 1, "three lines and their counts in one statement")
            let again = try await ledger.finishLines(batchID: created.id, [result(1, false), result(4, false, .route)], now: at(31))
            #expect(again == 1, "a second result for line 1 is skipped")
            #expect(try await ledger.pendingLines(batchID: created.id, after: 0, limit: 10).isEmpty)
            let counted = try #require(try await ledger.batch(created.id, apiKeyID: "a"))
            #expect(counted.counts == Batch.Counts(total: 4, completed: 2, failed: 2, byNodes: 1, byRoutes: 2))

            let failure = Batch.Failure(code: "x", message: "why")
            let ended = try #require(
                try await ledger.moveBatch(created.id, to: .completed, from: [.inProgress], failure: failure, now: at(40)))
            #expect(ended.status == .completed && ended.completedAt == at(40) && ended.inProgressAt == at(21))
            #expect(ended.failures == [failure])
            let outputID = try #require(ended.outputFileID)
            let errorID = try #require(ended.errorFileID)
            let output = try #require(try await ledger.file(outputID, apiKeyID: "a"))
            let error = try #require(try await ledger.file(errorID, apiKeyID: "a"))
            let written = [1, 3].map { result($0, true).line }
            #expect(output.kind == .output && output.lines == 2 && output.bytes == written.reduce(0) { $0 + $1.count + 1 })
            #expect(output.batchID == created.id && output.filename == "\(created.id)_output.jsonl" && output.createdAt == at(40))
            let outputLines = try await ledger.fileLines(output, after: 0, limit: 10)
            #expect(outputLines.map(\.number) == [1, 3] && outputLines.map(\.line) == written)
            let errorLines = try await ledger.fileLines(error, after: 0, limit: 10)
            #expect(errorLines.map(\.number) == [2, 4] && error.lines == 2)
            #expect(error.bytes == [result(2, false, .none), result(4, false, .route)].reduce(0) { $0 + $1.line.count + 1 })
            #expect(
                try await ledger.moveBatch(created.id, to: .cancelled, from: Batch.Status.live, failure: nil, now: at(50)) == nil,
                "an ended batch moves no more")
            #expect(try await ledger.claimBatches(runner: holder, until: at(300), now: at(60), limit: 10).isEmpty, "nor is claimed")
            #expect(try await ledger.deleteFile(file.id, apiKeyID: "a"), "its input may go now")
        }
    }

    @Test func writersRacingOnALineRecordItOnce() async throws {
        try await withLedger { ledger, _ in
            let (file, _) = try await upload(ledger, key: "a", at: 1, lines: 50)
            let batch = try await ledger.createBatch(newBatch(file, at: 2))
            let recorded = try await withThrowingTaskGroup(of: Int.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        try await ledger.finishLines(
                            batchID: batch.id, (1...50).map { result($0, writer.isMultiple(of: 2)) }, now: at(10))
                    }
                }
                return try await group.reduce(0, +)
            }
            #expect(recorded == 50, "each line once whoever wrote it")
            let counts = try #require(try await ledger.batch(batch.id, apiKeyID: nil)).counts
            #expect(counts.completed + counts.failed == 50 && counts.byNodes == 50)
        }
    }

    @Test func backgroundResponsesAreClaimedMovedAndPruned() async throws {
        try await withLedger { ledger, _ in
            let response = BackgroundResponse(
                id: "resp_" + BatchIDs.hex(at: at(1)), apiKeyID: "a", model: "m1", request: Data("{}".utf8), priority: .standard,
                createdAt: at(1))
            try await ledger.createResponse(response)
            #expect(try await ledger.response(response.id, apiKeyID: "a") == response)
            #expect(try await ledger.response(response.id, apiKeyID: "b") == nil)
            async let one = ledger.claimResponses(runner: "r1", until: at(100), now: at(10), limit: 10)
            async let two = ledger.claimResponses(runner: "r2", until: at(100), now: at(10), limit: 10)
            let (r1, r2) = try await (one, two)
            #expect(r1.count + r2.count == 1, "exactly one runner holds it")
            let running = try #require(
                try await ledger.moveResponse(response.id, to: .inProgress, from: [.queued], result: nil, failure: nil, now: at(11)))
            #expect(running.runner != nil && running.finishedAt == nil)
            let answer = Data(#"{"status":"completed"}"#.utf8)
            let done = try #require(
                try await ledger.moveResponse(response.id, to: .completed, from: [.inProgress], result: answer, failure: nil, now: at(12)))
            #expect(done.result == answer && done.finishedAt == at(12) && done.runner == nil && done.runnerUntil == nil)
            #expect(try await ledger.claimResponses(runner: "r3", until: at(200), now: at(150), limit: 10).isEmpty)
            #expect(try await ledger.pruneResponses(endedBefore: at(12)) == 0)
            #expect(try await ledger.pruneResponses(endedBefore: at(13)) == 1)
            #expect(try await ledger.response(response.id, apiKeyID: nil) == nil)
        }
    }
}
