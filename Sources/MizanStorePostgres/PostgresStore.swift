import Foundation
import Logging
import MizanCore
import MizanStore
import PostgresNIO
import ServiceLifecycle

/// A ``DispatchStore``, ``AccessStore`` and ``BatchStore`` on PostgreSQL, shared by any number of gateway
/// instances.
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
///
/// The store composes parts that each own their state: the schema, the job queue, the node
/// registry, the access ledger, the batch ledger, keys' counters and the event channel.
public final class PostgresStore: DispatchStore, Service {
    /// The notification channel for store events.
    public static let channel = PostgresEventChannel.name

    /// The schema version this build migrates to.
    public static var schemaVersion: Int { PostgresSchema.version }

    /// The statements this store has sent (migrations and the event listener's `LISTEN` left out).
    public let statements: StatementCounter

    /// The pool itself, for ``ping()``; the parts' statements go through their context's client.
    private let pool: PostgresClient
    private let logger: Logger
    let schema: PostgresSchema
    let events: PostgresEventChannel
    let jobQueue: PostgresJobQueue
    let nodeRegistry: PostgresNodeRegistry
    let accessLedger: PostgresAccessLedger
    let batchLedger: PostgresBatchLedger
    let counters: PostgresKeyCounters

    /// Creates a store over a client. The schema is migrated before the first statement (and
    /// when the store runs as a service); ``migrate()`` does it up front, e.g. to bound start-up.
    /// - Parameters:
    ///   - client: A PostgreSQL client whose `run()` is running.
    ///   - logger: Where the store logs.
    public init(client: PostgresClient, logger: Logger = Logger(label: "mizan.store.postgres")) {
        self.pool = client
        self.logger = logger
        let statements = StatementCounter()
        let schema = PostgresSchema(pool: client, logger: logger)
        let context = PostgresStoreContext(pool: client, schema: schema, statements: statements, logger: logger)
        self.statements = statements
        self.schema = schema
        self.events = context.events
        self.jobQueue = PostgresJobQueue(context: context)
        self.nodeRegistry = PostgresNodeRegistry(context: context)
        self.accessLedger = PostgresAccessLedger(context: context)
        self.batchLedger = PostgresBatchLedger(context: context)
        self.counters = PostgresKeyCounters(context: context)
    }

    /// Applies the migrations not yet applied, in one transaction under an advisory lock so
    /// that instances starting together do not race. Safe to call any number of times.
    /// - Throws: A database error; nothing is applied then.
    public func migrate() async throws {
        try await schema.migrate()
    }

    /// Adds a handler called for every later event, this instance's and (while the store
    /// runs) other instances'.
    /// - Parameter handler: The handler; it must return quickly.
    public func addEventHandler(_ handler: @escaping @Sendable (StoreEvent) -> Void) {
        events.hub.add(handler)
    }

    /// Checks that the database answers.
    /// - Throws: A database error.
    public func ping() async throws {
        try await pool.run("SELECT 1", logger: logger)
    }

    /// Whether the event listener is subscribed right now.
    public var isListening: Bool { events.isListening }

    /// Migrates the schema, then listens for other instances' events until cancelled or
    /// shut down gracefully, reconnecting with backoff when the connection drops.
    public func run() async throws {
        try await migrate()
        try? await cancelWhenGracefulShutdown { try await self.events.listen() }
        // Usage records and ends of admissions still queued are written before the pool goes.
        if await !usageWritten(timeout: .seconds(10)) {
            logger.error("some limited keys' usage records were still unwritten at shutdown")
        }
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
