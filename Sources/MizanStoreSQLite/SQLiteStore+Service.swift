import ServiceLifecycle

extension SQLiteStore: Service {
    /// Keeps the store open until graceful shutdown, writing the key counters that changed
    /// without a usage record about once a second; then writes the last of them, checkpoints
    /// the WAL into the file, closes the connections and releases the file's lock. Run it
    /// first in the gateway's `ServiceGroup`, so that it stops last.
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(1))
                do {
                    try await self.accessLedger.storeKeyCounters()
                } catch {
                    self.file.connections.logger.warning(
                        "key counters could not be written; trying again", metadata: ["mizan.error": "\(error)"])
                }
            }
        }
        // Usage records queued without waiting are committed before the file closes.
        if await !file.connections.writes.idle(timeout: .seconds(10)) {
            file.connections.logger.error("some limited keys' usage records were still unwritten at shutdown")
        }
        await close()
    }
}
