import Foundation
import Logging
import MizanStorePostgres
import PostgresNIO

/// Fresh databases on the test server: each gets its own name, is migrated, and is
/// dropped afterwards, so checks never see each other's rows.
public enum PostgresTestDatabase {
    /// The server to create databases on: `MIZAN_TEST_POSTGRES_URL` when set, otherwise
    /// this process's ``ThrowawayPostgres``.
    /// - Returns: A URL of a database on the server.
    /// - Throws: ``ThrowawayPostgres/StartError`` when no server can be had.
    public static func serverURL() async throws -> String {
        if let url = ProcessInfo.processInfo.environment["MIZAN_TEST_POSTGRES_URL"], !url.isEmpty { return url }
        return try await ThrowawayPostgres.started().url
    }

    /// Runs `body` with a running client of a new, empty database, then drops it.
    /// - Parameters:
    ///   - maximumConnections: The client's pool size.
    ///   - body: Receives the client and the database URL.
    /// - Returns: What `body` returns.
    public static func withDatabase<T: Sendable>(
        maximumConnections: Int = 20,
        _ body: @Sendable (PostgresClient, String) async throws -> T
    ) async throws -> T {
        let server = try await serverURL()
        let name = "mizan_test_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: "_"))"
        try await withClient(url: server, maximumConnections: 2) { admin in
            _ = try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
        }
        let url = replacingDatabase(in: server, with: name)
        let result: Result<T, any Error>
        do {
            let value = try await withClient(url: url, maximumConnections: maximumConnections) { client in
                try await body(client, url)
            }
            result = .success(value)
        } catch {
            result = .failure(error)
        }
        _ = try? await withClient(url: server, maximumConnections: 2) { admin in
            _ = try await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"))
        }
        return try result.get()
    }

    /// Runs `body` with a client whose `run()` runs for the duration.
    /// - Parameters:
    ///   - url: The database URL.
    ///   - maximumConnections: The pool size.
    ///   - body: Receives the running client.
    /// - Returns: What `body` returns.
    public static func withClient<T: Sendable>(
        url: String,
        maximumConnections: Int = 20,
        _ body: @Sendable (PostgresClient) async throws -> T
    ) async throws -> T {
        var configuration = try PostgresClient.Configuration(url: url)
        configuration.options.maximumConnections = maximumConnections
        let client = PostgresClient(configuration: configuration)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run()
                return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    static func replacingDatabase(in url: String, with name: String) -> String {
        guard var components = URLComponents(string: url) else { return url }
        components.path = "/" + name
        return components.string ?? url
    }
}

/// Runs a ``PostgresStore``'s event listener for the duration of `body`.
/// - Parameters:
///   - store: The store (its schema is migrated first).
///   - body: Runs while the store listens.
/// - Returns: What `body` returns.
public func withRunningStore<T: Sendable>(_ store: PostgresStore, _ body: @Sendable () async throws -> T) async throws -> T {
    try await store.migrate()
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            try await store.run()
            return nil
        }
        defer { group.cancelAll() }
        let deadline = ContinuousClock.now + .seconds(20)
        while !store.isListening {
            guard ContinuousClock.now < deadline else {
                throw ThrowawayPostgres.StartError(message: "the store's event listener did not start within 20 seconds")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        return try await body()
    }
}
