import Foundation
import MizanPostgresTesting
import MizanStorePostgres
import MizanStoreTesting
import MizanTesting
import Testing

@Suite("Statements per agent-served request on PostgreSQL")
struct PostgresStatementBudgetTests {
    /// What a job's life costs on PostgreSQL today, measured: one statement each for the
    /// insert, the lease, the completion and the usage record; lower it when a change saves one.
    static let budget = 4.0

    @Test func aJobsLifeOnPostgresStaysWithinItsStatements() async throws {
        try await PostgresTestDatabase.withDatabase { client, _ in
            let store = PostgresStore(client: client)
            try await store.migrate()
            let perJob = try await StatementBudget.perJob(store: store, counter: store.statements)
            #expect(perJob <= Self.budget, "\(perJob) statements per job")
        }
    }
}
