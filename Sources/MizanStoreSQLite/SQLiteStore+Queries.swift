import Foundation
import MizanCore
import MizanStore

extension SQLiteStore {
    public func job(_ id: JobID) async throws -> Job? {
        try await read("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE id = ?", [Rows.id(id)]).first.map(Rows.job)
    }

    public func jobs(_ ids: [JobID]) async throws -> [Job] {
        guard !ids.isEmpty else { return [] }
        var found: [Job] = []
        for chunk in stride(from: 0, to: ids.count, by: 500) {
            let slice = ids[chunk..<min(ids.count, chunk + 500)]
            let marks = Array(repeating: "?", count: slice.count).joined(separator: ", ")
            found += try await read("SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE id IN (\(marks))", slice.map(Rows.id)).map(Rows.job)
        }
        return found
    }

    public func jobs(matching filter: JobFilter, limit: Int) async throws -> [Job] {
        var conditions: [String] = []
        var bindings: [SQLValue] = []
        var indexed = ""
        if let state = filter.state {
            // The state is written into the text (one of five statements) so that the planner
            // can use the partial index of that state: a queued job is found through its model's
            // queue, a leased one through its node, a failed or timed-out one through their index
            // (SQLite proves that a query may use a partial index only from the index's own
            // condition); succeeded jobs, most of the table, are read in id order.
            let (index, condition): (String?, String) =
                switch state {
                case .accepted: ("mizan_jobs_queue", "state = 'accepted'")
                case .leased: ("mizan_jobs_leased_node", "state = 'leased'")
                case .succeeded: (nil, "state = 'succeeded'")
                case .failed, .timedOut:
                    ("mizan_jobs_unsuccessful", "(state = 'failed' OR state = 'timed_out') AND state = '\(state.rawValue)'")
                }
            indexed = index.map { " INDEXED BY \($0)" } ?? ""
            conditions.append(condition)
        }
        if let model = filter.model {
            conditions.append("model = ?")
            bindings.append(.text(model))
        }
        if let before = filter.before {
            conditions.append("id < ?")
            bindings.append(Rows.id(before))
        }
        let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
        bindings.append(.integer(max(0, limit)))
        return try await read(
            "SELECT \(Rows.jobColumns) FROM mizan_jobs\(indexed)\(whereClause) ORDER BY id DESC LIMIT ?", bindings
        ).map(Rows.job)
    }

    public func queueDepth() async throws -> [String: Int] {
        var depth: [String: Int] = [:]
        for row in try await read("SELECT model, count(*) AS n FROM mizan_jobs WHERE state = 'accepted' GROUP BY model") {
            if let model = row.column("model")?.string, let count = row.column("n")?.integer, count > 0 { depth[model] = Int(count) }
        }
        return depth
    }

    public func leasedJobs(nodeID: NodeID) async throws -> [Job] {
        try await read(
            "SELECT \(Rows.jobColumns) FROM mizan_jobs WHERE state = 'leased' AND node_id = ? ORDER BY id", [Rows.id(nodeID)]
        ).map(Rows.job)
    }
}
