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
