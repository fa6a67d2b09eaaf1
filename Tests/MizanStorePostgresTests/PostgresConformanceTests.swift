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

@Suite("PostgreSQL key limits across instances")
struct PostgresKeyLimitTests {
    @Test func twoInstancesTogetherAdmitExactlyTheLimit() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            // Two stores as two gateway instances would hold them: each its own cache of counters.
            let first = PostgresStore(client: client)
            try await first.migrate()
            let second = PostgresStore(client: client)
            let policy = KeyPolicy(limits: .init(requestsPerMinute: 10, concurrentRequests: 25))
            let key = try await first.createAPIKey(
                APIKey(name: "shared", prefix: "mzn_sk_sh", createdAt: Date(), policy: policy), hash: Data(UUID().uuidString.utf8))
            let now = Date()
            let admitted = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<40 {
                    let store = index.isMultiple(of: 2) ? first : second
                    group.addTask {
                        let admission = try await store.admit(
                            key, holdID: UUID().uuidString, holdUntil: now.addingTimeInterval(60), now: now)
                        if case .admitted = admission { return true }
                        return false
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(admitted == 10, "two instances together admit exactly 10 of 40")
            let counters = try await second.keyCounters(key.id)
            #expect(counters.holds.count == 10, "and hold exactly 10 slots")
        }
    }
}
