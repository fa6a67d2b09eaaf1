import Foundation
import MizanStoreSQLite
import MizanStoreTesting
import Testing

@Suite("Statements per agent-served request")
struct SQLiteStatementBudgetTests {
    /// What a job's life costs on SQLite today, measured (a transaction's BEGIN and COMMIT
    /// count as statements); lower it when a change saves one. (Eleven since a job's body is
    /// inserted into a table of its own, so that its transitions do not write it again: a lone
    /// insert is a transaction of two statements, ten or eleven a life as writes share commits.)
    static let budget = 11.0

    @Test func aJobsLifeOnSQLiteStaysWithinItsStatements() async throws {
        try await withSQLiteStore { store, _ in
            let perJob = try await StatementBudget.perJob(store: store, counter: store.statements)
            #expect(perJob <= Self.budget, "\(perJob) statements per job")
        }
    }
}
