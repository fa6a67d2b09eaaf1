import Foundation
import MizanCore
import MizanStore

/// The checks every ``BatchStore`` (files, batches and background responses) must pass; each
/// expects a fresh store.
///
/// ```swift
/// @Test(arguments: BatchStoreConformance.checks)
/// func conformance(_ check: BatchStoreConformance.Check) async throws {
///     try await check.run(on: InMemoryStore())
/// }
/// ```
public enum BatchStoreConformance {
    /// One named check of a ``BatchStore``.
    public typealias Check = ConformanceCheck<any BatchStore>

    /// Every check.
    public static let checks: [Check] = fileChecks + batchChecks + lineChecks + responseChecks

    /// Uploaded files: storage, owners, lists, lines and deletion.
    static let fileChecks: [Check] = [
        Check("a file is stored with its lines and read by its owner") { store in
            let (file, lines) = try await upload(store, key: "a", at: 1, lines: 3)
            try require(try await store.file(file.id, apiKeyID: "a") == file, "its owner reads it")
            try require(try await store.file(file.id, apiKeyID: "b") == nil, "another key does not see it")
            try require(try await store.file(file.id, apiKeyID: nil) == file, "the admin API sees every key's")
            try require(try await store.file("file-missing", apiKeyID: nil) == nil, "an unknown file is nil")
            let all = try await store.fileLines(file, after: 0, limit: 10)
            try require(all.map(\.number) == [1, 2, 3], "its lines in order: \(all.map(\.number))")
            try require(all.map(\.line) == lines.map(\.raw), "each line as uploaded")
            let page = try await store.fileLines(file, after: 1, limit: 1)
            try require(page.map(\.number) == [2] && page.first?.line == lines[1].raw, "after 1, one line: \(page.map(\.number))")
            try require(try await store.fileLines(file, after: 3, limit: 10).isEmpty, "nothing after the last")
            try require(try await store.fileLines(file, after: 0, limit: 0).isEmpty, "a limit of 0 reads nothing")
        },
        Check("files list newest first, by owner, in pages") { store in
            let first = try await upload(store, key: "a", at: 1).file
            let second = try await upload(store, key: "a", at: 2).file
            let third = try await upload(store, key: "a", at: 3).file
            let others = try await upload(store, key: "b", at: 4).file
            let mine = try await store.files(apiKeyID: "a", after: nil, limit: 10)
            try require(mine.map(\.id) == [third.id, second.id, first.id], "a's files, newest first")
            try require(mine.first == third, "each file as stored")
            let page = try await store.files(apiKeyID: "a", after: third.id, limit: 1)
            try require(page.map(\.id) == [second.id], "the page after the newest holds the next")
            try require(try await store.files(apiKeyID: "a", after: first.id, limit: 10).isEmpty, "nothing older than the oldest")
            try require(try await store.files(apiKeyID: "b", after: nil, limit: 10).map(\.id) == [others.id], "b sees only its own")
            let every = try await store.files(apiKeyID: nil, after: nil, limit: 10)
            try require(every.map(\.id) == [others.id, third.id, second.id, first.id], "nil lists every key's")
            try require(try await store.files(apiKeyID: nil, after: nil, limit: 2).count == 2, "at most the limit")
            try require(try await store.files(apiKeyID: "c", after: nil, limit: 10).isEmpty, "a key with none sees none")
        },
        Check("a file is deleted by its owner, never while a live batch reads it") { store in
            let (file, _) = try await upload(store, key: "a", at: 1, lines: 2)
            try require(try await store.deleteFile(file.id, apiKeyID: "b") == false, "another key cannot delete it")
            try require(try await store.file(file.id, apiKeyID: nil) == file, "it is still there")
            let batch = try await createBatch(store, input: file, at: 2)
            try await requireThrows("the input of a live batch is kept", matching: Fixture.isCode(.conflict)) {
                _ = try await store.deleteFile(file.id, apiKeyID: "a")
            }
            try await requireThrows("even for the admin API", matching: Fixture.isCode(.conflict)) {
                _ = try await store.deleteFile(file.id, apiKeyID: nil)
            }
            try require(try await store.file(file.id, apiKeyID: "a") == file, "a refused deletion leaves it")
            _ = try await store.moveBatch(batch.id, to: .cancelled, from: Batch.Status.live, failure: nil, now: Fixture.at(3))
            try require(try await store.deleteFile(file.id, apiKeyID: "a"), "once the batch has ended it is deleted")
            try require(try await store.file(file.id, apiKeyID: nil) == nil, "it is gone")
            try require(try await store.fileLines(file, after: 0, limit: 10).isEmpty, "its lines went with it")
            try require(try await store.deleteFile(file.id, apiKeyID: "a") == false, "a second deletion finds nothing")
            try require(try await store.batch(batch.id, apiKeyID: "a") != nil, "the batch stays")
            let other = try await upload(store, key: "b", at: 4).file
            try require(try await store.deleteFile(other.id, apiKeyID: nil), "the admin API deletes any key's")
        },
    ]

    /// Batches: creation, owners, lists, claims and moves.
    static let batchChecks: [Check] = [
        Check("a batch is made from its key's upload, one line per input line") { store in
            let (file, _) = try await upload(store, key: "a", at: 1, lines: 3)
            let request = Batch(
                id: "batch_" + BatchIDs.hex(at: Fixture.at(2)), apiKeyID: "a", endpoint: .chatCompletions, inputFileID: file.id,
                windowSeconds: 3_600, metadata: ["team": "eval"], createdAt: Fixture.at(2))
            let batch = try await store.createBatch(request)
            var expected = request
            expected.counts.total = 3
            try require(batch == expected, "stored as given, validating, with 3 lines: \(batch)")
            try require(batch.status == .validating && batch.counts.pending == 3, "validating, every line waiting")
            try require(try await store.batch(batch.id, apiKeyID: "a") == batch, "its owner reads it")
            try require(try await store.batch(batch.id, apiKeyID: "b") == nil, "another key does not see it")
            try require(try await store.batch(batch.id, apiKeyID: nil) == batch, "the admin API sees it")
            try require(try await store.batch("batch_missing", apiKeyID: nil) == nil, "an unknown batch is nil")
            try await requireThrows("another key's file is no input", matching: Fixture.isCode(.notFound)) {
                _ = try await store.createBatch(
                    Batch(apiKeyID: "b", endpoint: .chatCompletions, inputFileID: file.id, createdAt: Fixture.at(3)))
            }
            try await requireThrows("an unknown file is no input", matching: Fixture.isCode(.notFound)) {
                _ = try await store.createBatch(
                    Batch(apiKeyID: "a", endpoint: .chatCompletions, inputFileID: "file-missing", createdAt: Fixture.at(3)))
            }
            let pending = try await store.pendingLines(batchID: batch.id, after: 0, limit: 10)
            try require(pending.map(\.number) == [1, 2, 3], "every line waits: \(pending.map(\.number))")
        },
        Check("batches list newest first, by owner, in pages") { store in
            let file = try await upload(store, key: "a", at: 0).file
            let theirs = try await upload(store, key: "b", at: 0.5).file
            let first = try await createBatch(store, input: file, at: 1)
            let second = try await createBatch(store, input: file, at: 2)
            let third = try await createBatch(store, input: file, at: 3)
            let others = try await createBatch(store, input: theirs, at: 4)
            let mine = try await store.batches(apiKeyID: "a", after: nil, limit: 10)
            try require(mine.map(\.id) == [third.id, second.id, first.id], "a's batches, newest first")
            try require(mine.first == third, "each batch as stored")
            try require(try await store.batches(apiKeyID: "a", after: third.id, limit: 1).map(\.id) == [second.id], "a page")
            try require(try await store.batches(apiKeyID: "a", after: first.id, limit: 10).isEmpty, "nothing older than the oldest")
            try require(try await store.batches(apiKeyID: "b", after: nil, limit: 10).map(\.id) == [others.id], "b sees only its own")
            let every = try await store.batches(apiKeyID: nil, after: nil, limit: 10)
            try require(every.map(\.id) == [others.id, third.id, second.id, first.id], "nil lists every key's")
            try require(try await store.batches(apiKeyID: nil, after: nil, limit: 0).isEmpty, "a limit of 0 lists nothing")
        },
        Check("a batch is claimed by one runner at a time") { store in
            let file = try await upload(store, key: "a", at: 0).file
            let older = try await createBatch(store, input: file, at: 1)
            let newer = try await createBatch(store, input: file, at: 2)
            let claimed = try await store.claimBatches(runner: "r1", until: Fixture.at(100), now: Fixture.at(10), limit: 10)
            try require(claimed.map(\.id) == [older.id, newer.id], "both, oldest first: \(claimed.map(\.id))")
            try require(claimed.first == older, "each batch as stored")
            let held = try await store.claimBatches(runner: "r2", until: Fixture.at(200), now: Fixture.at(50), limit: 10)
            try require(held.isEmpty, "another runner gets nothing while the claim holds")
            let renewed = try await store.claimBatches(runner: "r1", until: Fixture.at(160), now: Fixture.at(60), limit: 10)
            try require(renewed.map(\.id) == [older.id, newer.id], "the same runner renews its claims")
            let stillHeld = try await store.claimBatches(runner: "r2", until: Fixture.at(300), now: Fixture.at(150), limit: 10)
            try require(stillHeld.isEmpty, "the renewed claim holds past the first one's end")
            let lapsed = try await store.claimBatches(runner: "r2", until: Fixture.at(300), now: Fixture.at(170), limit: 1)
            try require(lapsed.map(\.id) == [older.id], "once it lapsed, another runner takes them, at most the limit")
            let rest = try await store.claimBatches(runner: "r1", until: Fixture.at(300), now: Fixture.at(171), limit: 10)
            try require(rest.map(\.id) == [newer.id], "the first runner keeps only what nobody took")
        },
        Check("a runner's own claims are renewed before lapsed ones are taken") { store in
            let file = try await upload(store, key: "a", at: 0).file
            let older = try await createBatch(store, input: file, at: 1)
            let newer = try await createBatch(store, input: file, at: 2)
            _ = try await store.claimBatches(runner: "dead", until: Fixture.at(20), now: Fixture.at(10), limit: 1)
            let mine = try await store.claimBatches(runner: "live", until: Fixture.at(100), now: Fixture.at(10), limit: 1)
            try require(mine.map(\.id) == [newer.id], "the live runner holds the newer one")
            // The older one's claim lapsed; a claim of one renews the live runner's own first.
            let renewed = try await store.claimBatches(runner: "live", until: Fixture.at(200), now: Fixture.at(50), limit: 1)
            try require(renewed.map(\.id) == [newer.id], "its own claim first: \(renewed.map(\.id))")
            let both = try await store.claimBatches(runner: "live", until: Fixture.at(200), now: Fixture.at(51), limit: 2)
            try require(Set(both.map(\.id)) == [older.id, newer.id], "then the lapsed one too")
        },
        Check("ended batches are never claimed and released claims are free") { store in
            let file = try await upload(store, key: "a", at: 0).file
            let ended = try await createBatch(store, input: file, at: 1)
            let live = try await createBatch(store, input: file, at: 2)
            let moved = try await store.moveBatch(ended.id, to: .failed, from: [.validating], failure: nil, now: Fixture.at(3))
            try require(moved?.status == .failed, "the first batch failed")
            let claimed = try await store.claimBatches(runner: "r1", until: Fixture.at(100), now: Fixture.at(10), limit: 10)
            try require(claimed.map(\.id) == [live.id], "only the live batch is claimed")
            try await store.releaseClaims(runner: "r2")
            try require(
                try await store.claimBatches(runner: "r2", until: Fixture.at(100), now: Fixture.at(11), limit: 10).isEmpty,
                "releasing another runner's claims frees nothing")
            try await store.releaseClaims(runner: "r1")
            let taken = try await store.claimBatches(runner: "r2", until: Fixture.at(100), now: Fixture.at(12), limit: 10)
            try require(taken.map(\.id) == [live.id], "a released batch is taken at once")
            _ = try await store.moveBatch(live.id, to: .cancelled, from: Batch.Status.live, failure: nil, now: Fixture.at(13))
            try require(
                try await store.claimBatches(runner: "r2", until: Fixture.at(100), now: Fixture.at(14), limit: 10).isEmpty,
                "a batch that ended is no longer claimed, even by its runner")
        },
        Check("a batch moves only from the statuses named, stamping each") { store in
            let file = try await upload(store, key: "a", at: 0).file
            let batch = try await createBatch(store, input: file, at: 1)
            try require(
                try await store.moveBatch(batch.id, to: .inProgress, from: [.finalizing], failure: nil, now: Fixture.at(5)) == nil,
                "not from a status it is not in")
            try require(try await store.batch(batch.id, apiKeyID: nil)?.status == .validating, "a refused move changes nothing")
            try require(
                try await store.moveBatch("batch_missing", to: .inProgress, from: Batch.Status.live, failure: nil, now: Fixture.at(5))
                    == nil, "an unknown batch is nil")
            let started = try require(
                try await store.moveBatch(batch.id, to: .inProgress, from: [.validating], failure: nil, now: Fixture.at(10)),
                "it starts")
            try require(started.status == .inProgress && started.inProgressAt == Fixture.at(10), "in progress, stamped")
            let again = try require(
                try await store.moveBatch(batch.id, to: .inProgress, from: [.inProgress], failure: nil, now: Fixture.at(20)),
                "a move to the same status")
            try require(again.inProgressAt == Fixture.at(10), "keeps the first start")
            let stop = Batch.Failure(code: "budget_exhausted", message: "out of budget", line: 2)
            let cancelling = try require(
                try await store.moveBatch(batch.id, to: .cancelling, from: [.inProgress], failure: stop, now: Fixture.at(30)),
                "it is cancelled")
            try require(cancelling.cancellingAt == Fixture.at(30) && cancelling.failures == [stop], "stamped, with why")
            let cancelled = try require(
                try await store.moveBatch(batch.id, to: .cancelled, from: [.cancelling], failure: nil, now: Fixture.at(40)),
                "it ends")
            try require(cancelled.cancelledAt == Fixture.at(40) && cancelled.inProgressAt == Fixture.at(10), "every stamp kept")
            try require(cancelled.outputFileID == nil && cancelled.errorFileID == nil, "no line ended: no file")
            try require(try await store.batch(batch.id, apiKeyID: "a") == cancelled, "the move is stored")
            try require(
                try await store.moveBatch(batch.id, to: .inProgress, from: Batch.Status.live, failure: nil, now: Fixture.at(50)) == nil,
                "an ended batch moves no more")
        },
    ]

    /// A batch's lines: pending, finished once, and written to its files as it ends.
    static let lineChecks: [Check] = [
        Check("pending lines skip the ended ones, in pages") { store in
            let (file, lines) = try await upload(store, key: "a", at: 0, lines: 5)
            let batch = try await createBatch(store, input: file, at: 1)
            let recorded = try await store.finishLines(
                batchID: batch.id, [result(2, succeeded: true), result(4, succeeded: false)], now: Fixture.at(5))
            try require(recorded == 2, "two lines ended: \(recorded)")
            let pending = try await store.pendingLines(batchID: batch.id, after: 0, limit: 10)
            try require(pending == [lines[0], lines[2], lines[4]], "lines 1, 3 and 5, as uploaded: \(pending.map(\.number))")
            let page = try await store.pendingLines(batchID: batch.id, after: 1, limit: 1)
            try require(page == [lines[2]], "after 1, one line: \(page.map(\.number))")
            try require(try await store.pendingLines(batchID: batch.id, after: 5, limit: 10).isEmpty, "nothing after the last")
            try require(try await store.pendingLines(batchID: "batch_missing", after: 0, limit: 10).isEmpty, "an unknown batch has none")
        },
        Check("a line's result is recorded once and counted") { store in
            let file = try await upload(store, key: "a", at: 0, lines: 5).file
            let batch = try await createBatch(store, input: file, at: 1)
            let first = try await store.finishLines(
                batchID: batch.id,
                [
                    result(1, succeeded: true, place: .node), result(2, succeeded: false, place: .route),
                    result(3, succeeded: true, place: .route),
                ],
                now: Fixture.at(5))
            try require(first == 3, "three lines recorded: \(first)")
            let second = try await store.finishLines(
                batchID: batch.id,
                [
                    result(1, succeeded: false, place: .none), result(4, succeeded: false, place: .none),
                    result(4, succeeded: true, place: .node), result(9, succeeded: true, place: .node),
                ],
                now: Fixture.at(6))
            try require(second == 1, "only line 4, once: an ended line and a line not in the batch are skipped (\(second))")
            let counts = try require(try await store.batch(batch.id, apiKeyID: nil), "the batch").counts
            try require(
                counts == Batch.Counts(total: 5, completed: 2, failed: 2, byNodes: 1, byRoutes: 2),
                "counted once each, by place: \(counts)")
            try require(counts.pending == 1, "one line waits")
            let pending = try await store.pendingLines(batchID: batch.id, after: 0, limit: 10)
            try require(pending.map(\.number) == [5], "line 5 waits: \(pending.map(\.number))")
            try require(
                try await store.finishLines(batchID: "batch_missing", [result(1, succeeded: true)], now: Fixture.at(7)) == 0, "none")
        },
        Check("an ended batch records its output and error files") { store in
            let file = try await upload(store, key: "a", at: 0, lines: 4).file
            let batch = try await createBatch(store, input: file, at: 1)
            let one = result(1, succeeded: true, place: .node)
            let two = result(2, succeeded: false, place: .route)
            let three = result(3, succeeded: true, place: .route)
            // Out of order, in two writes: the files are in line order whatever the order lines end.
            _ = try await store.finishLines(batchID: batch.id, [three], now: Fixture.at(5))
            _ = try await store.finishLines(batchID: batch.id, [two, one], now: Fixture.at(6))
            _ = try await store.moveBatch(batch.id, to: .finalizing, from: Batch.Status.live, failure: nil, now: Fixture.at(9))
            let ended = try require(
                try await store.moveBatch(batch.id, to: .completed, from: [.finalizing], failure: nil, now: Fixture.at(10)), "it completes")
            try require(ended.completedAt == Fixture.at(10) && ended.finalizingAt == Fixture.at(9), "stamped")
            let outputID = try require(ended.outputFileID, "an output file: a line succeeded")
            let errorID = try require(ended.errorFileID, "an error file: a line failed")
            try require(try await store.batch(batch.id, apiKeyID: "a") == ended, "the batch names its files")

            let output = try require(try await store.file(outputID, apiKeyID: "a"), "the output file is its key's")
            try require(
                output.kind == .output && output.batchID == batch.id && output.apiKeyID == "a" && output.createdAt == Fixture.at(10),
                "an output file of the batch: \(output)")
            try require(
                output.lines == 2 && output.bytes == one.line.count + three.line.count + 2,
                "two lines with their line ends: \(output.lines), \(output.bytes)")
            let outputLines = try await store.fileLines(output, after: 0, limit: 10)
            try require(outputLines.map(\.number) == [1, 3] && outputLines.map(\.line) == [one.line, three.line], "answers in line order")
            try require(try await store.fileLines(output, after: 1, limit: 1).map(\.number) == [3], "in pages")
            try require(try await store.fileLines(output, after: 0, limit: 1).map(\.number) == [1], "at most the limit")

            let error = try require(try await store.file(errorID, apiKeyID: nil), "the error file")
            try require(error.kind == .error && error.batchID == batch.id && error.apiKeyID == "a", "an error file of the batch: \(error)")
            try require(error.lines == 1 && error.bytes == two.line.count + 1, "one line: \(error.lines), \(error.bytes)")
            let errorLines = try await store.fileLines(error, after: 0, limit: 10)
            try require(errorLines.map(\.number) == [2] && errorLines.map(\.line) == [two.line], "the failure")
            try require(try await store.file(outputID, apiKeyID: "b") == nil, "another key does not see them")
            try await requireThrows("an output file is no batch's input", matching: Fixture.isCode(.notFound)) {
                _ = try await store.createBatch(
                    Batch(apiKeyID: "a", endpoint: .chatCompletions, inputFileID: outputID, createdAt: Fixture.at(11)))
            }

            let allWell = try await createBatch(store, input: file, at: 20)
            _ = try await store.finishLines(batchID: allWell.id, [result(4, succeeded: true)], now: Fixture.at(21))
            let cancelled = try require(
                try await store.moveBatch(allWell.id, to: .cancelled, from: Batch.Status.live, failure: nil, now: Fixture.at(22)),
                "cancelled")
            try require(cancelled.outputFileID != nil && cancelled.errorFileID == nil, "no line failed: no error file")
        },
    ]

    /// Background responses: storage, owners, claims, moves and pruning.
    static let responseChecks: [Check] = [
        Check("background responses are read by their owner and claimed like batches") { store in
            let older = try await createResponse(store, key: "a", at: 1)
            let newer = try await createResponse(store, key: "b", at: 2)
            try require(try await store.response(older.id, apiKeyID: "a") == older, "its owner reads it as stored")
            try require(try await store.response(older.id, apiKeyID: "b") == nil, "another key does not see it")
            try require(try await store.response(newer.id, apiKeyID: nil) == newer, "the admin API sees every key's")
            try require(try await store.response("resp_missing", apiKeyID: nil) == nil, "an unknown response is nil")

            let claimed = try await store.claimResponses(runner: "r1", until: Fixture.at(100), now: Fixture.at(10), limit: 10)
            try require(claimed.map(\.id) == [older.id, newer.id], "both, oldest first: \(claimed.map(\.id))")
            try require(claimed.allSatisfy { $0.runner == "r1" && $0.runnerUntil == Fixture.at(100) }, "held by r1 until 100")
            try require(try await store.response(older.id, apiKeyID: nil)?.runner == "r1", "the claim is stored")
            try require(
                try await store.claimResponses(runner: "r2", until: Fixture.at(200), now: Fixture.at(50), limit: 10).isEmpty,
                "another runner gets nothing while the claim holds")
            let renewed = try await store.claimResponses(runner: "r1", until: Fixture.at(160), now: Fixture.at(60), limit: 10)
            try require(renewed.map(\.runnerUntil) == [Fixture.at(160), Fixture.at(160)], "the same runner renews")
            try require(
                try await store.claimResponses(runner: "r2", until: Fixture.at(300), now: Fixture.at(150), limit: 10).isEmpty,
                "the renewed claim holds")
            let lapsed = try await store.claimResponses(runner: "r2", until: Fixture.at(300), now: Fixture.at(170), limit: 1)
            try require(lapsed.map(\.id) == [older.id] && lapsed.first?.runner == "r2", "a lapsed claim is taken, at most the limit")
            try await store.releaseClaims(runner: "r2")
            let released = try require(try await store.response(older.id, apiKeyID: nil), "the response")
            try require(released.runner == nil && released.runnerUntil == nil, "released: nobody holds it")
            _ = try await store.moveResponse(
                newer.id, to: .cancelled, from: [.queued, .inProgress], result: nil, failure: nil, now: Fixture.at(180))
            let free = try await store.claimResponses(runner: "r3", until: Fixture.at(400), now: Fixture.at(181), limit: 10)
            try require(free.map(\.id) == [older.id], "the released one is taken at once, the ended one never")
        },
        Check("a background response moves only from the statuses named") { store in
            let response = try await createResponse(store, key: "a", at: 1)
            _ = try await store.claimResponses(runner: "r1", until: Fixture.at(100), now: Fixture.at(2), limit: 10)
            try require(
                try await store.moveResponse(
                    response.id, to: .completed, from: [.inProgress], result: nil, failure: nil, now: Fixture.at(3))
                    == nil, "not from a status it is not in")
            try require(
                try await store.moveResponse(
                    "resp_missing", to: .inProgress, from: [.queued], result: nil, failure: nil, now: Fixture.at(3))
                    == nil, "an unknown response is nil")
            let running = try require(
                try await store.moveResponse(response.id, to: .inProgress, from: [.queued], result: nil, failure: nil, now: Fixture.at(4)),
                "it runs")
            try require(running.status == .inProgress && running.finishedAt == nil && running.runner == "r1", "running, still held")
            let answer = Data(#"{"id":"resp_1","object":"response","status":"completed"}"#.utf8)
            let done = try require(
                try await store.moveResponse(
                    response.id, to: .completed, from: [.inProgress], result: answer, failure: nil, now: Fixture.at(5)),
                "it completes")
            try require(done.status == .completed && done.result == answer && done.finishedAt == Fixture.at(5), "answered, stamped")
            try require(done.runner == nil && done.runnerUntil == nil, "an ended response is held by nobody")
            try require(try await store.response(response.id, apiKeyID: "a") == done, "the move is stored")
            try require(
                try await store.moveResponse(
                    response.id, to: .failed, from: [.queued, .inProgress], result: nil, failure: nil, now: Fixture.at(6))
                    == nil, "an ended response moves no more")

            let other = try await createResponse(store, key: "a", at: 7)
            let why = Batch.Failure(code: "model_not_found", message: "no such model")
            let failed = try require(
                try await store.moveResponse(other.id, to: .failed, from: [.queued], result: nil, failure: why, now: Fixture.at(8)),
                "it fails")
            try require(failed.failure == why && failed.result == nil && failed.finishedAt == Fixture.at(8), "with why, stamped")
            try require(try await store.response(other.id, apiKeyID: nil) == failed, "the failure is stored")
        },
        Check("pruning deletes only responses that ended before the cutoff") { store in
            let early = try await createResponse(store, key: "a", at: 1)
            let late = try await createResponse(store, key: "a", at: 2)
            let running = try await createResponse(store, key: "a", at: 3)
            let queued = try await createResponse(store, key: "a", at: 4)
            _ = try await store.moveResponse(
                early.id, to: .completed, from: [.queued], result: Data("{}".utf8), failure: nil, now: Fixture.at(10))
            _ = try await store.moveResponse(late.id, to: .failed, from: [.queued], result: nil, failure: nil, now: Fixture.at(30))
            _ = try await store.moveResponse(running.id, to: .inProgress, from: [.queued], result: nil, failure: nil, now: Fixture.at(5))
            try require(try await store.pruneResponses(endedBefore: Fixture.at(10)) == 0, "one that ended at the cutoff stays")
            try require(try await store.pruneResponses(endedBefore: Fixture.at(20)) == 1, "the one that ended before 20")
            try require(try await store.response(early.id, apiKeyID: nil) == nil, "is gone")
            try require(try await store.response(late.id, apiKeyID: nil) != nil, "the later one stays")
            try require(try await store.pruneResponses(endedBefore: Fixture.at(1_000)) == 1, "then the later one")
            try require(try await store.response(running.id, apiKeyID: nil)?.status == .inProgress, "a running one stays")
            try require(try await store.response(queued.id, apiKeyID: nil)?.status == .queued, "a queued one stays")
        },
    ]

    // MARK: Fixtures

    /// Uploads a file of `lines` lines for `key`, made at `seconds` (its id in that order).
    static func upload(_ store: any BatchStore, key: String, at seconds: Double, lines count: Int = 1) async throws -> (
        file: StoredFile, lines: [InputLine]
    ) {
        let lines = (1...max(1, count)).map { number in
            InputLine(
                number: number, customID: "request-\(number)", url: "/v1/chat/completions",
                raw: Data(
                    #"{"custom_id":"request-\#(number)","method":"POST","url":"/v1/chat/completions","body":{"model":"m1"}}"#.utf8))
        }
        let file = StoredFile(
            id: "file-" + BatchIDs.hex(at: Fixture.at(seconds)), apiKeyID: key, purpose: "batch", filename: "input-\(seconds).jsonl",
            bytes: lines.reduce(0) { $0 + $1.raw.count + 1 }, lines: lines.count, createdAt: Fixture.at(seconds))
        return (try await store.createFile(file, lines: lines), lines)
    }

    /// Creates a batch of `input`'s key reading it, made at `seconds` (its id in that order).
    static func createBatch(_ store: any BatchStore, input: StoredFile, at seconds: Double) async throws -> Batch {
        try await store.createBatch(
            Batch(
                id: "batch_" + BatchIDs.hex(at: Fixture.at(seconds)), apiKeyID: input.apiKeyID, endpoint: .chatCompletions,
                inputFileID: input.id, createdAt: Fixture.at(seconds)))
    }

    /// How line `number` ended: its answer or its failure.
    static func result(_ number: Int, succeeded: Bool, place: LineResult.Place = .node) -> LineResult {
        let line =
            succeeded
            ? #"{"id":"batch_req_\#(number)","custom_id":"request-\#(number)","response":{"status_code":200}}"#
            : #"{"id":"batch_req_\#(number)","custom_id":"request-\#(number)","error":{"code":"failed"}}"#
        return LineResult(number: number, succeeded: succeeded, line: Data(line.utf8), place: place)
    }

    /// Stores a queued background response of `key`, made at `seconds` (its id in that order).
    static func createResponse(_ store: any BatchStore, key: String, at seconds: Double) async throws -> BackgroundResponse {
        let response = BackgroundResponse(
            id: "resp_" + BatchIDs.hex(at: Fixture.at(seconds)), apiKeyID: key, model: "m1",
            request: Data(#"{"model":"m1","input":"hi"}"#.utf8), priority: .standard, createdAt: Fixture.at(seconds))
        try await store.createResponse(response)
        return response
    }
}
