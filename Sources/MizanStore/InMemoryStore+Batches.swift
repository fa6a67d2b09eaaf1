import Foundation
import MizanCore
import Synchronization

/// The Files and Batch APIs' records and background responses, held in memory.
struct BatchState {
    var files: [String: StoredFile] = [:]
    var uploadLines: [String: [InputLine]] = [:]
    var batches: [String: Batch] = [:]
    /// Each batch's ended lines: its result by line number.
    var results: [String: [Int: LineResult]] = [:]
    var batchClaims: [String: (runner: String, until: Date)] = [:]
    var responses: [String: BackgroundResponse] = [:]
}

extension InMemoryStore {
    public func createFile(_ file: StoredFile, lines: [InputLine]) async throws -> StoredFile {
        batchState.withLock { state in
            state.files[file.id] = file
            state.uploadLines[file.id] = lines
        }
        return file
    }

    public func file(_ id: String, apiKeyID: String?) async throws -> StoredFile? {
        batchState.withLock { state in
            state.files[id].flatMap { apiKeyID == nil || $0.apiKeyID == apiKeyID ? $0 : nil }
        }
    }

    public func files(apiKeyID: String?, after: String?, limit: Int) async throws -> [StoredFile] {
        batchState.withLock { state in
            Array(
                state.files.values.filter { (apiKeyID == nil || $0.apiKeyID == apiKeyID) && (after == nil || $0.id < after!) }
                    .sorted { $0.id > $1.id }.prefix(max(0, limit)))
        }
    }

    public func fileLines(_ file: StoredFile, after: Int, limit: Int) async throws -> [(number: Int, line: Data)] {
        batchState.withLock { state in
            switch file.kind {
            case .upload:
                return (state.uploadLines[file.id] ?? []).lazy.filter { $0.number > after }.prefix(max(0, limit)).map {
                    ($0.number, $0.raw)
                }
            case .output, .error:
                let succeeded = file.kind == .output
                let results = (state.results[file.batchID ?? ""] ?? [:]).values
                    .filter { $0.succeeded == succeeded && $0.number > after }.sorted { $0.number < $1.number }
                return results.prefix(max(0, limit)).map { ($0.number, $0.line) }
            }
        }
    }

    public func deleteFile(_ id: String, apiKeyID: String?) async throws -> Bool {
        try batchState.withLock { state in
            guard let file = state.files[id], apiKeyID == nil || file.apiKeyID == apiKeyID else { return false }
            if state.batches.values.contains(where: { $0.inputFileID == id && !$0.status.isTerminal }) {
                throw BatchStoreErrors.fileInUse(id)
            }
            state.files[id] = nil
            state.uploadLines[id] = nil
            return true
        }
    }

    public func createBatch(_ batch: Batch) async throws -> Batch {
        try batchState.withLock { state in
            guard let input = state.files[batch.inputFileID], input.apiKeyID == batch.apiKeyID, input.kind == .upload else {
                throw BatchStoreErrors.noInput(batch.inputFileID)
            }
            var batch = batch
            batch.counts.total = state.uploadLines[input.id]?.count ?? 0
            state.batches[batch.id] = batch
            state.results[batch.id] = [:]
            return batch
        }
    }

    public func batch(_ id: String, apiKeyID: String?) async throws -> Batch? {
        batchState.withLock { state in
            state.batches[id].flatMap { apiKeyID == nil || $0.apiKeyID == apiKeyID ? $0 : nil }
        }
    }

    public func batches(apiKeyID: String?, after: String?, limit: Int) async throws -> [Batch] {
        batchState.withLock { state in
            Array(
                state.batches.values.filter { (apiKeyID == nil || $0.apiKeyID == apiKeyID) && (after == nil || $0.id < after!) }
                    .sorted { $0.id > $1.id }.prefix(max(0, limit)))
        }
    }

    public func claimBatches(runner: String, until: Date, now: Date, limit: Int) async throws -> [Batch] {
        batchState.withLock { state in
            var claimed: [Batch] = []
            // This runner's own claims first: they are renewed whatever the limit.
            let claims = state.batchClaims
            let mine = { (id: String) in claims[id]?.runner == runner }
            let ordered = state.batches.values.sorted { mine($0.id) != mine($1.id) ? mine($0.id) : $0.id < $1.id }
            for batch in ordered where !batch.status.isTerminal {
                guard claimed.count < limit else { break }
                if let claim = state.batchClaims[batch.id], claim.runner != runner, claim.until > now { continue }
                state.batchClaims[batch.id] = (runner, until)
                claimed.append(batch)
            }
            return claimed
        }
    }

    public func releaseClaims(runner: String) async throws {
        batchState.withLock { state in
            state.batchClaims = state.batchClaims.filter { $0.value.runner != runner }
            for (id, response) in state.responses where response.runner == runner {
                state.responses[id]?.runner = nil
                state.responses[id]?.runnerUntil = nil
            }
        }
    }

    public func pendingLines(batchID: String, after: Int, limit: Int) async throws -> [InputLine] {
        batchState.withLock { state in
            guard let batch = state.batches[batchID] else { return [] }
            let ended = state.results[batchID] ?? [:]
            return Array(
                (state.uploadLines[batch.inputFileID] ?? []).lazy.filter { $0.number > after && ended[$0.number] == nil }.prefix(
                    max(0, limit)))
        }
    }

    public func finishLines(batchID: String, _ results: [LineResult], now: Date) async throws -> Int {
        batchState.withLock { state in
            guard var batch = state.batches[batchID] else { return 0 }
            var applied = 0
            for result in results where state.results[batchID]?[result.number] == nil {
                guard result.number >= 1, result.number <= batch.counts.total else { continue }
                state.results[batchID, default: [:]][result.number] = result
                batch.counts.count(result)
                applied += 1
            }
            state.batches[batchID] = batch
            return applied
        }
    }

    public func moveBatch(_ id: String, to status: Batch.Status, from: [Batch.Status], failure: Batch.Failure?, now: Date) async throws
        -> Batch?
    {
        batchState.withLock { state in
            guard var batch = state.batches[id], from.contains(batch.status) else { return nil }
            batch.move(to: status, failure: failure, now: now)
            if status.isTerminal {
                let results = (state.results[id] ?? [:]).values
                for kind in [StoredFile.Kind.output, .error] {
                    let lines = results.filter { $0.succeeded == (kind == .output) }
                    guard !lines.isEmpty else { continue }
                    let file = StoredFile.written(
                        by: batch, kind: kind, lines: lines.count, bytes: lines.reduce(0) { $0 + $1.line.count + 1 }, now: now)
                    state.files[file.id] = file
                    if kind == .output { batch.outputFileID = file.id } else { batch.errorFileID = file.id }
                }
                state.batchClaims[id] = nil
            }
            state.batches[id] = batch
            return batch
        }
    }

    public func createResponse(_ response: BackgroundResponse) async throws {
        batchState.withLock { $0.responses[response.id] = response }
    }

    public func response(_ id: String, apiKeyID: String?) async throws -> BackgroundResponse? {
        batchState.withLock { state in
            state.responses[id].flatMap { apiKeyID == nil || $0.apiKeyID == apiKeyID ? $0 : nil }
        }
    }

    public func claimResponses(runner: String, until: Date, now: Date, limit: Int) async throws -> [BackgroundResponse] {
        batchState.withLock { state in
            var claimed: [BackgroundResponse] = []
            let ordered = state.responses.values.sorted {
                ($0.runner == runner) != ($1.runner == runner) ? $0.runner == runner : $0.id < $1.id
            }
            for var response in ordered where !response.status.isTerminal {
                guard claimed.count < limit else { break }
                if let holder = response.runner, holder != runner, let until = response.runnerUntil, until > now { continue }
                response.runner = runner
                response.runnerUntil = until
                state.responses[response.id] = response
                claimed.append(response)
            }
            return claimed
        }
    }

    public func moveResponse(
        _ id: String, to status: BackgroundResponse.Status, from: [BackgroundResponse.Status], result: Data?,
        failure: Batch.Failure?, now: Date
    ) async throws -> BackgroundResponse? {
        batchState.withLock { state in
            guard var response = state.responses[id], from.contains(response.status) else { return nil }
            response.move(to: status, result: result, failure: failure, now: now)
            state.responses[id] = response
            return response
        }
    }

    public func pruneResponses(endedBefore: Date) async throws -> Int {
        batchState.withLock { state in
            let old = state.responses.values.filter { $0.status.isTerminal && ($0.finishedAt.map { $0 < endedBefore } ?? false) }
            for response in old { state.responses[response.id] = nil }
            return old.count
        }
    }
}
