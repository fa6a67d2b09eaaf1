import Logging
import MizanStore
import PostgresNIO

/// What every part of the store is given: the client its statements go through, the event
/// channel its changes are announced on, and the logger. Passed in at construction, so that a
/// part can be built and tested on its own.
struct PostgresStoreContext: Sendable {
    /// The pool, migrated first and counted.
    let client: StoreClient
    /// Where events are published locally and notified to other instances.
    let events: PostgresEventChannel
    /// Where the parts log.
    let logger: Logger

    /// A context over a pool, with an event channel of its own.
    /// - Parameters:
    ///   - pool: A PostgreSQL client whose `run()` is running.
    ///   - schema: The schema keeper shared by the parts.
    ///   - statements: Where statements are counted.
    ///   - logger: Where the parts log.
    init(pool: PostgresClient, schema: PostgresSchema, statements: StatementCounter, logger: Logger) {
        self.client = StoreClient(pool: pool, schema: schema, statements: statements)
        self.events = PostgresEventChannel(client: client, logger: logger)
        self.logger = logger
    }
}
