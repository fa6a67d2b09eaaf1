import Foundation
import Logging
import MizanCore
import MizanStore
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// A ``DispatchStore`` on PostgreSQL, shared by any number of gateway instances.
///
/// Every transition is one conditional statement, leases are claimed with
/// `FOR UPDATE SKIP LOCKED`, and events cross instances by `LISTEN/NOTIFY` on one channel
/// with at most one notification per statement. Events of this instance are delivered in
/// memory at once; its own notifications are ignored when they come back.
///
/// Run it as a `Service` (beside the `PostgresClient`) so that it listens for other
/// instances' events:
///
/// ```swift
/// let client = PostgresClient(configuration: try .init(url: "postgres://…"))
/// let store = PostgresStore(client: client)
/// let group = ServiceGroup(services: [client, store, …], logger: logger)
/// ```
public final class PostgresStore: DispatchStore, Service {
    /// The notification channel for store events.
    public static let channel = "mizan_events"

    /// The pool itself; statements go through ``client``, which migrates first.
    let pool: PostgresClient
    let logger: Logger
    let hub = StoreEventHub()
    /// Tells this instance's notifications apart from other instances'.
    let origin = UUID().uuidString.lowercased()
    private let listening = Mutex(false)
    /// Set once the schema is known to be current, so that later statements skip the check.
    let migrated = Atomic<Bool>(false)
    /// The migration under way, shared by the statements that wait for it.
    let migration = Mutex<Task<Void, any Error>?>(nil)
    /// The counters of keys as this instance last read or wrote them, with their version: a
    /// change starts from them and costs one statement when no other instance came between.
    let keyCounterCache = Mutex<[String: (version: Int64, counters: KeyCounters)]>([:])
    /// The changes of a key's counters that arrive together, written together.
    let keyCounterBatcher = KeyCounterBatcher<UsageRecord>()
    /// Usage records that arrive together, inserted together.
    let usageBatches = BatchQueue<UsageRecord>(limit: 256)
    /// The statements this store has sent through ``client`` (migrations and the event
    /// listener's `LISTEN` left out).
    public let statements = StatementCounter()

    /// Creates a store over a client. The schema is migrated before the first statement (and
    /// when the store runs as a service); ``migrate()`` does it up front, e.g. to bound start-up.
    /// - Parameters:
    ///   - client: A PostgreSQL client whose `run()` is running.
    ///   - logger: Where the store logs.
    public init(client: PostgresClient, logger: Logger = Logger(label: "mizan.store.postgres")) {
        self.pool = client
        self.logger = logger
    }

    public func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        hub.add(handler)
    }

    public func ping() async throws {
        try await pool.run("SELECT 1", logger: logger)
    }

    /// Whether the event listener is subscribed right now.
    public var isListening: Bool { listening.withLock { $0 } }

    /// Migrates the schema, then listens for other instances' events until cancelled or
    /// shut down gracefully, reconnecting with backoff when the connection drops.
    public func run() async throws {
        try await migrate()
        try? await cancelWhenGracefulShutdown { try await self.listen() }
        listening.withLock { $0 = false }
        // Usage records and ends of admissions still queued are written before the pool goes.
        if await !usageWritten(timeout: .seconds(10)) {
            logger.error("some limited keys' usage records were still unwritten at shutdown")
        }
    }

    private func listen() async throws {
        var backoff = Duration.milliseconds(100)
        var reconnecting = false
        while !Task.isCancelled {
            do {
                let resync = reconnecting
                try await pool.withOpenConnection(logger: logger) { connection in
                    try await connection.listen(on: Self.channel) { notifications in
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

    func payload(_ events: [StoreEvent]) -> String {
        EventPayload(origin: origin, events: events).encoded()
    }

    /// Sends events to other instances in one notification (or a few, for large batches).
    func notify(_ events: [StoreEvent]) async throws {
        guard !events.isEmpty else { return }
        for chunk in stride(from: 0, to: events.count, by: EventPayload.maxEvents) {
            let slice = Array(events[chunk..<min(events.count, chunk + EventPayload.maxEvents)])
            try await client.run("SELECT pg_notify(\(Self.channel), \(payload(slice)))", logger: logger)
        }
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

extension DispatchStore where Self == PostgresStore {
    /// A PostgreSQL store: `Dispatcher(store: .postgres(client: client))`.
    /// - Parameters:
    ///   - client: A running PostgreSQL client.
    ///   - logger: Where the store logs.
    /// - Returns: The store (run it as a service to receive other instances' events).
    public static func postgres(client: PostgresClient, logger: Logger = Logger(label: "mizan.store.postgres")) -> PostgresStore {
        PostgresStore(client: client, logger: logger)
    }
}
