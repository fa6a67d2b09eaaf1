import ServiceLifecycle

extension SQLiteStore: Service {
    /// Keeps the store open until graceful shutdown, then checkpoints the WAL into the file,
    /// closes the connections and releases the file's lock. Run it first in the gateway's
    /// `ServiceGroup`, so that it stops last.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }
}
