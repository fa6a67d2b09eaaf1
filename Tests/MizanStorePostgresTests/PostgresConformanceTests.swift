import Foundation
import MizanCore
import MizanPostgresTesting
import MizanStorePostgres
import MizanStoreTesting
import Testing

@Suite("PostgreSQL store conformance")
struct PostgresConformanceTests {
    @Test(arguments: StoreConformance.checks)
    func conformance(_ check: StoreConformance.Check) async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let store = PostgresStore(client: client)
            try await withRunningStore(store) {
                do {
                    try await check.run(on: store)
                } catch {
                    Issue.record("\(String(reflecting: error))")
                }
            }
        }
    }

    @Test func migrationsAreSafeToApplyTwice() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let store = PostgresStore(client: client)
            try await store.migrate()
            try await store.migrate()
            try await PostgresStore(client: client).migrate()
            let versions = try await client.query("SELECT count(*) FROM mizan_schema_migrations").collectInts()
            #expect(versions == [PostgresStore.schemaVersion])
        }
    }
}

@Suite("PostgreSQL access store conformance")
struct PostgresAccessConformanceTests {
    @Test(arguments: AccessConformance.checks)
    func conformance(_ check: AccessConformance.Check) async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let store = PostgresStore(client: client)
            try await store.migrate()
            try await check.run(on: store)
        }
    }
}

@Suite("PostgreSQL store used before migrate()")
struct PostgresFirstUseTests {
    @Test func theFirstStatementsCreateTheSchemaOnce() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            // Neither migrate() nor run(): the store is used as `Dispatcher(store: .postgres(client:))` would.
            let store = PostgresStore(client: client)
            let jobs = (0..<8).map { _ in Job(requestID: "r", model: "m1", body: Data("{}".utf8), deadline: Date().addingTimeInterval(60)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for job in jobs { group.addTask { _ = try await store.insert(job) } }
                try await group.waitForAll()
            }
            #expect(try await store.jobs(state: .accepted, limit: 100).count == 8)
            let versions = try await client.query("SELECT count(*) FROM mizan_schema_migrations").collectInts()
            #expect(versions == [PostgresStore.schemaVersion], "every migration applied, each once")
        }
    }
}
