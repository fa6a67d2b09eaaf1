import Foundation
import Logging
import MizanPostgresTesting
import PostgresNIO
import Testing

@testable import MizanStorePostgres

@Suite("PostgreSQL schema", .timeLimit(.minutes(2)))
struct PostgresSchemaTests {
    let logger = Logger(label: "mizan.test.schema")

    @Test func stepsAreNumberedInOrderAndTheVersionIsTheLast() {
        let versions = PostgresSchema.migrations.map(\.version)
        #expect(versions == Array(1...versions.count), "steps are numbered 1, 2, … without gaps")
        #expect(PostgresSchema.version == versions.last)
        #expect(PostgresSchema.migrations.allSatisfy { !$0.statements.isEmpty })
    }

    @Test func callersWaitingTogetherMigrateOnce() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let schema = PostgresSchema(pool: client, logger: logger)
            #expect(!schema.isCurrent)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<8 { group.addTask { try await schema.ensureCurrent() } }
                try await group.waitForAll()
            }
            #expect(schema.isCurrent)
            let versions = try await client.query("SELECT version FROM mizan_schema_migrations ORDER BY version").collectInts()
            #expect(versions == PostgresSchema.migrations.map(\.version), "every step applied, each once")
            let tables = try await client.query(
                """
                SELECT count(*) FROM information_schema.tables WHERE table_name IN
                    ('mizan_jobs', 'mizan_nodes', 'mizan_api_keys', 'mizan_usage', 'mizan_console_signouts')
                """
            ).collectInts()
            #expect(tables == [5])
        }
    }

    @Test func instancesMigratingTogetherApplyEachStepOnce() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let schemas = (0..<4).map { _ in PostgresSchema(pool: client, logger: logger) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for schema in schemas { group.addTask { try await schema.migrate() } }
                try await group.waitForAll()
            }
            #expect(schemas.allSatisfy { $0.isCurrent })
            let versions = try await client.query("SELECT count(*) FROM mizan_schema_migrations").collectInts()
            #expect(versions == [PostgresSchema.version])
            // A keeper that finds the schema current applies nothing more.
            try await PostgresSchema(pool: client, logger: logger).ensureCurrent()
            let again = try await client.query("SELECT count(*) FROM mizan_schema_migrations").collectInts()
            #expect(again == [PostgresSchema.version])
        }
    }
}
