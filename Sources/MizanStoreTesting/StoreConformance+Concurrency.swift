import Foundation
import MizanCore
import MizanStore
import Synchronization

extension StoreConformance {
    static let concurrencyChecks: [Check] = [
        Check("concurrent leasers never share a job") { store in
            let nodes = try await withThrowingTaskGroup(of: Node.self) { group in
                for i in 0..<8 { group.addTask { try await Fixture.node(store, maxConcurrency: 50, at: Double(i)) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            try await insertMany(store, count: 300)
            let leases = try await withThrowingTaskGroup(of: [Lease].self) { group in
                for node in nodes {
                    group.addTask {
                        var mine: [Lease] = []
                        for round in 0..<10 {
                            mine += try await store.lease(nodeID: node.id, limit: 5, now: Fixture.at(1000 + Double(round))).map(\.lease)
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            let ids = leases.map(\.jobID)
            try require(ids.count == 300, "every job is leased, got \(ids.count)")
            try require(Set(ids).count == ids.count, "no job is leased twice")
            let perNode = Dictionary(grouping: leases, by: \.nodeID)
            try require(perNode.values.allSatisfy { $0.count <= 50 }, "no node exceeds its capacity")
        },
        Check("ten thousand jobs each leased and completed exactly once") { store in
            let total = 10_000
            try await insertMany(store, count: total)
            let nodes = try await withThrowingTaskGroup(of: Node.self) { group in
                for i in 0..<4 { group.addTask { try await Fixture.node(store, maxConcurrency: 64, at: Double(i)) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let completed = try await withThrowingTaskGroup(of: [JobID].self) { group in
                for node in nodes {
                    group.addTask {
                        var done: [JobID] = []
                        var idle = 0
                        while idle < 3 {
                            let leased = try await store.lease(nodeID: node.id, limit: 32, now: Fixture.at(2000))
                            if leased.isEmpty {
                                idle += 1
                                continue
                            }
                            idle = 0
                            for job in leased {
                                let finished = try await store.complete(job.lease, with: Fixture.success, now: Fixture.at(2001))
                                try require(finished.state == .succeeded, "each completion applies")
                                done.append(job.job.id)
                            }
                        }
                        return done
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            try require(completed.count == total, "every job is completed, got \(completed.count)")
            try require(Set(completed).count == total, "no job is completed twice")
            let depth = try await store.queueDepth()
            try require(depth.isEmpty, "the queue is empty: \(depth)")
            let succeeded = try await store.jobs(state: .succeeded, limit: total + 1)
            try require(succeeded.count == total, "the store holds \(total) succeeded jobs, got \(succeeded.count)")
        },
    ]

    /// Inserts `count` jobs of model m1 from a few concurrent tasks.
    static func insertMany(_ store: any DispatchStore, count: Int) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            let writers = 8
            for w in 0..<writers {
                group.addTask {
                    for i in stride(from: w, to: count, by: writers) {
                        _ = try await store.insert(Fixture.job(createdAt: Double(i) / 1000, deadline: 10_000))
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}
