import Foundation
import MizanCore
import MizanStore
import MizanStoreSQLite
import MizanStoreTesting
import Testing

@Suite("SQLite batch store conformance")
struct SQLiteBatchConformanceTests {
    @Test(arguments: BatchStoreConformance.checks)
    func conformance(_ check: BatchStoreConformance.Check) async throws {
        try await withSQLiteStore { store, _ in try await check.run(on: store) }
    }
}

@Suite("SQLite batch store: the file")
struct SQLiteBatchStoreTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func line(_ number: Int) -> InputLine {
        InputLine(
            number: number, customID: "request-\(number)", url: "/v1/chat/completions",
            raw: Data(#"{"custom_id":"request-\#(number)","method":"POST","url":"/v1/chat/completions","body":{}}"#.utf8))
    }

    @Test func aBatchAndItsLinesSurviveAReopen() async throws {
        try await withSQLiteStore { store, path in
            let lines = (1...3).map(Self.line)
            let file = try await store.createFile(
                StoredFile(apiKeyID: "a", purpose: "batch", filename: "in.jsonl", bytes: 300, lines: 3, createdAt: Self.t0), lines: lines)
            let created = try await store.createBatch(
                Batch(apiKeyID: "a", endpoint: .chatCompletions, inputFileID: file.id, metadata: ["run": "7"], createdAt: Self.t0))
            let answer = LineResult(number: 2, succeeded: true, line: Data(#"{"custom_id":"request-2"}"#.utf8), place: .node)
            #expect(try await store.finishLines(batchID: created.id, [answer], now: Self.t0 + 5) == 1)
            let started = try #require(
                try await store.moveBatch(created.id, to: .inProgress, from: [.validating], failure: nil, now: Self.t0 + 6))
            _ = try await store.claimBatches(runner: "gateway-1", until: Self.t0 + 60, now: Self.t0 + 6, limit: 10)
            await store.close()

            let again = try await SQLiteStore.open(path: path)
            #expect(try await again.file(file.id, apiKeyID: "a") == file)
            #expect(try await again.fileLines(file, after: 0, limit: 10).map(\.line) == lines.map(\.raw))
            let batch = try #require(try await again.batch(created.id, apiKeyID: "a"))
            #expect(batch == started)
            #expect(batch.counts == Batch.Counts(total: 3, completed: 1, byNodes: 1))
            #expect(try await again.pendingLines(batchID: created.id, after: 0, limit: 10) == [lines[0], lines[2]])
            // The claim survives too: another runner waits for it to lapse.
            #expect(try await again.claimBatches(runner: "gateway-2", until: Self.t0 + 120, now: Self.t0 + 30, limit: 10).isEmpty)
            #expect(try await again.finishLines(batchID: created.id, [answer], now: Self.t0 + 31) == 0, "a line ends once")
            let ended = try #require(
                try await again.moveBatch(created.id, to: .completed, from: Batch.Status.live, failure: nil, now: Self.t0 + 40))
            let outputID = try #require(ended.outputFileID)
            let output = try #require(try await again.file(outputID, apiKeyID: "a"))
            #expect(output.lines == 1 && output.bytes == answer.line.count + 1)
            #expect(try await again.fileLines(output, after: 0, limit: 10).map(\.line) == [answer.line])
            await again.close()
        }
    }
}
