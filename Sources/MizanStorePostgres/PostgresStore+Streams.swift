import Foundation
import MizanCore
import MizanStore
import PostgresNIO

extension PostgresStore {
    /// NOTIFY payloads must stay under 8,000 bytes.
    static let maxPayloadBytes = 7_500

    /// Relays a streaming job's event data to the other instances through `NOTIFY` (in order:
    /// each notification is sent after the previous one committed), split so every payload fits.
    public func relayStream(_ id: JobID, data: [String], end: Bool) async throws -> Bool {
        var batch: [String] = []
        var size = 0
        func send(_ items: [String], end: Bool) async throws {
            let text = payload([.streamed(id: id, data: items, end: end)])
            guard text.utf8.count <= 7_900 else {
                throw MizanError(.payloadTooLarge, "A streamed event of job \(id) is too large to relay between gateway instances.")
            }
            try await client.run("SELECT pg_notify(\(Self.channel), \(text))", logger: logger)
        }
        for item in data {
            let cost = ((try? JSONEncoder().encode(item))?.count ?? item.utf8.count * 2) + 1
            if !batch.isEmpty, size + cost > Self.maxPayloadBytes {
                try await send(batch, end: false)
                batch = []
                size = 0
            }
            batch.append(item)
            size += cost
        }
        if !batch.isEmpty || end { try await send(batch, end: end) }
        return true
    }
}
