import Foundation
import Logging
import MizanCore
import MizanStore
import MizanTestSupport
import PostgresNIO
import Synchronization

@testable import MizanStorePostgres

/// The shared context of the store's parts over `client`, as ``PostgresStore`` builds it,
/// with its own schema keeper and statement counter: a part built on it stands alone.
/// - Parameters:
///   - client: A running client of a test database.
///   - statements: Where the parts' statements are counted.
/// - Returns: The context.
func makeContext(_ client: PostgresClient, statements: StatementCounter = StatementCounter()) -> PostgresStoreContext {
    let logger = Logger(label: "mizan.test.store.postgres")
    return PostgresStoreContext(
        pool: client, schema: PostgresSchema(pool: client, logger: logger), statements: statements, logger: logger)
}

/// The events a channel delivered to its handlers, in order.
final class EventLog: Sendable {
    private let events = Mutex<[StoreEvent]>([])

    /// Starts recording what `channel` delivers.
    init(_ channel: PostgresEventChannel) {
        channel.hub.add { event in self.events.withLock { $0.append(event) } }
    }

    /// What was delivered so far.
    var all: [StoreEvent] { events.withLock { $0 } }
}

/// Runs `body` while every channel of `channels` listens (and each is subscribed).
func withListening<T: Sendable>(_ channels: [PostgresEventChannel], _ body: @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        for channel in channels {
            group.addTask {
                try await channel.listen()
                return nil
            }
        }
        defer { group.cancelAll() }
        for channel in channels {
            guard try await eventually(poll: .milliseconds(5), { channel.isListening }) else {
                throw MizanError(.storeUnavailable, "a test channel's listener did not start")
            }
        }
        return try await body()
    }
}

/// Inserts an active, healthy node serving `models` straight into the table (no registry).
/// - Returns: Its id.
func insertActiveNode(
    _ context: PostgresStoreContext, models: [String], maxConcurrency: Int, lastSeen: Date = Date()
) async throws -> NodeID {
    let id = NodeID()
    try await context.client.run(
        """
        INSERT INTO mizan_nodes (id, name, models, max_concurrency, labels, status, health, last_seen, created_at)
        VALUES (\(id.uuid), 'test-node', \(models), \(maxConcurrency), '{}', 'active', 'healthy', \(lastSeen), \(lastSeen))
        """,
        logger: context.logger)
    return id
}

/// A node's `leased` count as stored.
func leasedCount(_ context: PostgresStoreContext, of node: NodeID) async throws -> Int {
    try await context.client.rows("SELECT leased FROM mizan_nodes WHERE id = \(node.uuid)", logger: context.logger) {
        try $0.decode(Int.self)
    }.first ?? -1
}

/// A job of `model`, due in a minute unless told.
func testJob(
    model: String = "m1", deadline: Date = Date().addingTimeInterval(60), maxAttempts: Int = 3, idempotencyKey: String? = nil
) -> Job {
    Job(
        requestID: "r-\(UUID().uuidString.prefix(8))", model: model, body: Data(#"{"messages":[]}"#.utf8), deadline: deadline,
        maxAttempts: maxAttempts, idempotencyKey: idempotencyKey)
}

/// The error code of what `work` threw (`nil` when it did not throw a ``MizanError``).
func mizanCode<T>(_ work: () async throws -> T) async -> MizanError.Code? {
    do {
        _ = try await work()
        return nil
    } catch let error as MizanError {
        return error.code
    } catch {
        return nil
    }
}
