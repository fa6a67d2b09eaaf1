import PostgresNIO

extension PostgresRowSequence {
    func collectInts() async throws -> [Int] {
        var out: [Int] = []
        for try await row in self { if let value = try? row.decode(Int.self) { out.append(value) } else { out.append(0) } }
        return out
    }
}
