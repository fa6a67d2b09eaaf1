import Foundation
import Logging
import MizanCore
import MizanStore
import PostgresNIO
import Synchronization

/// The store's events between gateway instances: `LISTEN/NOTIFY` on one channel.
///
/// Events of this instance are delivered to its handlers at once, in memory; other instances
/// learn of them by a notification, sent by ``notify(_:)`` or by the statement that made the
/// change (its SQL embeds ``payload(_:)``). This instance's own notifications are ignored when
/// they come back. After the listening connection was lost, handlers get ``StoreEvent/resync``:
/// notifications sent meanwhile are gone, and waiters must look again.
final class PostgresEventChannel: Sendable {
    /// The notification channel for store events.
    static let name = "mizan_events"

    /// NOTIFY payloads must stay under 8,000 bytes; relayed stream data is split below this.
    static let maxPayloadBytes = 7_500

    /// Tells this instance's notifications apart from other instances'.
    let origin = UUID().uuidString.lowercased()
    /// This instance's event handlers.
    let hub = StoreEventHub()
    private let client: StoreClient
    private let logger: Logger
    private let listening = Mutex(false)

    /// Creates a channel; it receives other instances' events while ``listen()`` runs.
    /// - Parameters:
    ///   - client: Where notifications are sent (counted as statements) and listened for (not counted).
    ///   - logger: Where the channel logs.
    init(client: StoreClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// Whether the listener is subscribed right now.
    var isListening: Bool { listening.withLock { $0 } }

    /// Listens for other instances' events until cancelled, reconnecting with backoff when the
    /// connection drops (and publishing ``StoreEvent/resync`` once back).
    func listen() async throws {
        defer { listening.withLock { $0 = false } }
        var backoff = Duration.milliseconds(100)
        var reconnecting = false
        while !Task.isCancelled {
            do {
                let resync = reconnecting
                try await client.pool.withOpenConnection(logger: logger) { connection in
                    try await connection.listen(on: Self.name) { notifications in
                        self.listening.withLock { $0 = true }
                        if resync {
                            // Notifications sent while disconnected are lost; let waiters look again.
                            self.hub.publish(.resync)
                        }
                        for try await notification in notifications {
                            self.receive(notification.payload)
                        }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning("event listener lost its connection; retrying", metadata: ["mizan.error": "\(String(reflecting: error))"])
            }
            let wasConnected = listening.withLock { state in
                defer { state = false }
                return state
            }
            if wasConnected { backoff = .milliseconds(100) }
            reconnecting = true
            try await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    /// Delivers this instance's events to its own handlers at once, without a round trip
    /// through the database; ``notify(_:)`` or the statement itself carries them to other instances.
    func publishLocally(_ events: [StoreEvent]) {
        hub.publish(events)
    }

    /// The notification text of `events`, sent by this instance.
    func payload(_ events: [StoreEvent]) -> String {
        EventPayload(origin: origin, events: events).encoded()
    }

    /// Sends events to other instances in one notification (or a few, for large batches).
    func notify(_ events: [StoreEvent]) async throws {
        guard !events.isEmpty else { return }
        for chunk in stride(from: 0, to: events.count, by: EventPayload.maxEvents) {
            let slice = Array(events[chunk..<min(events.count, chunk + EventPayload.maxEvents)])
            try await client.run("SELECT pg_notify(\(Self.name), \(payload(slice)))", logger: logger)
        }
    }

    /// Relays a streaming job's event data to the other instances (in order: each notification
    /// is sent after the previous one committed), split so every payload fits.
    /// - Throws: ``MizanError`` `payloadTooLarge` when one item alone does not fit in a notification.
    func relay(_ id: JobID, data: [String], end: Bool) async throws {
        var batch: [String] = []
        var size = 0
        func send(_ items: [String], end: Bool) async throws {
            let text = payload([.streamed(id: id, data: items, end: end)])
            guard text.utf8.count <= 7_900 else {
                throw MizanError(.payloadTooLarge, "A streamed event of job \(id) is too large to relay between gateway instances.")
            }
            try await client.run("SELECT pg_notify(\(Self.name), \(text))", logger: logger)
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
    }

    private func receive(_ text: String) {
        guard !EventPayload.isOwn(text, origin: origin) else { return }
        guard let payload = EventPayload.decode(text) else {
            logger.debug("ignored an unreadable notification")
            return
        }
        guard payload.origin != origin else { return }
        hub.publish(payload.events)
    }
}
