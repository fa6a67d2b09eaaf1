import MizanCore
import MizanPostgresTesting
import MizanStore
import MizanStorePostgres
import MizanTestSupport
import PostgresNIO
import Testing

/// The server dropping connections (a restart, an administrator) must never leave a store
/// call waiting forever: the pool can hand out a connection it has not yet seen close, and a
/// statement written to it is never answered.
@Suite("PostgreSQL store when the server drops connections")
struct ConnectionLossTests {
    @Test func everyCallEndsAndTheStoreRecovers() async throws {
        try await PostgresTestDatabase.withDatabase { client, url in
            let store = PostgresStore(client: client)
            try await withRunningStore(store) {
                try await PostgresTestDatabase.withClient(url: url, maximumConnections: 1) { admin in
                    for round in 0..<15 {
                        // Several pooled connections (and the listener's) are open and idle…
                        #expect(
                            try await eventually(poll: .milliseconds(10)) { store.isListening },
                            "the listener is back before round \(round)")
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            for _ in 0..<6 { group.addTask { _ = try await Self.retrying { try await store.queueDepth() } } }
                            try await group.waitForAll()
                        }
                        // …when the server ends every one of them.
                        let killed = try await admin.query(
                            """
                            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                            WHERE datname = current_database() AND pid <> pg_backend_pid()
                            """
                        ).collectInts()
                        #expect(!killed.isEmpty)
                        let ended = await finishes(within: .seconds(20)) {
                            await withTaskGroup(of: Void.self) { group in
                                for _ in 0..<6 { group.addTask { _ = try? await store.queueDepth() } }
                                group.addTask { _ = try? await store.job(JobID()) }
                                group.addTask { _ = try? await store.nodes() }
                            }
                        }
                        #expect(ended, "every call ended (answered or failed) in round \(round)")
                        guard ended else { return }
                    }
                    // Afterwards the store works, and its listener is back.
                    let depth = try await store.queueDepth()
                    #expect(depth.isEmpty)
                    #expect(try await eventually(poll: .milliseconds(10)) { store.isListening })
                }
            }
        }
    }

    /// `work`, tried again while it fails (the pool may still be replacing dropped connections).
    private static func retrying<T>(_ work: () async throws -> T) async throws -> T {
        for _ in 0..<50 {
            if let value = try? await work() { return value }
            try await Task.sleep(for: .milliseconds(100))
        }
        return try await work()
    }
}
