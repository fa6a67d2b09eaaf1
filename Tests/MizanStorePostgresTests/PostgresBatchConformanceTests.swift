import MizanPostgresTesting
import MizanStorePostgres
import MizanStoreTesting
import Testing

@Suite("PostgreSQL batch store conformance")
struct PostgresBatchConformanceTests {
    @Test(arguments: BatchStoreConformance.checks)
    func conformance(_ check: BatchStoreConformance.Check) async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let store = PostgresStore(client: client)
            try await store.migrate()
            try await check.run(on: store)
        }
    }
}
