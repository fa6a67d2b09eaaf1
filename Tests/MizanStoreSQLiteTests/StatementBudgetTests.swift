import Foundation
import MizanStoreSQLite
import MizanStoreTesting
import MizanTesting
import Testing

@Suite("Statements per agent-served request")
struct SQLiteStatementBudgetTests {
    /// What a job's life costs on SQLite today, measured (a transaction's BEGIN and COMMIT
    /// count as statements); lower it when a change saves one. Nine: the insert is a
    /// transaction of two statements (a job's body goes into a table of its own, so that its
    /// transitions do not write it again), the lease three (the node's check, the selection of
    /// its jobs, their update by row number: an update returning every column writes each row
    /// into a temporary table first), the completion one, the usage record one; writes that
    /// share a commit make it less.
    static let budget = 9.0

    @Test func aJobsLifeOnSQLiteStaysWithinItsStatements() async throws {
        try await withSQLiteStore { store, _ in
            let perJob = try await StatementBudget.perJob(store: store, counter: store.statements)
            #expect(perJob <= Self.budget, "\(perJob) statements per job")
        }
    }
}
