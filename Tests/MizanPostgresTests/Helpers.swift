import PostgresNIO

extension PostgresRowSequence {
    func collectInts() async throws -> [Int] {
        var out: [Int] = []
        for try await value in self.decode(Int.self) { out.append(value) }
        return out
    }
}
