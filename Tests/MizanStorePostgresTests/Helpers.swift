import PostgresNIO

extension PostgresRowSequence {
    func collectInts() async throws -> [Int] {
        var out: [Int] = []
        for try await row in self { if let value = try? row.decode(Int.self) { out.append(value) } else { out.append(0) } }
        return out
    }
}

/// Whether `work` ends within `limit`. A call that never returns is left behind (it cannot
/// be cancelled), so the test fails instead of hanging.
func finishes(within limit: Duration, _ work: @escaping @Sendable () async -> Void) async -> Bool {
    let outcome = AsyncStream<Bool>.makeStream()
    let worker = Task {
        await work()
        outcome.continuation.yield(true)
    }
    let timer = Task {
        try? await Task.sleep(for: limit)
        outcome.continuation.yield(false)
    }
    var iterator = outcome.stream.makeAsyncIterator()
    let finished = await iterator.next() ?? false
    timer.cancel()
    if !finished { worker.cancel() }
    return finished
}
