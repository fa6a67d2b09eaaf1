import Foundation
import MizanCore
import MizanStore

extension StoreConformance {
    /// Scheduling: classes, fair order across keys, promotion, a spill's withdrawal against a
    /// concurrent lease, affinity offers and a key's queue cap.
    static let schedulingChecks: [Check] = [
        Check("lease the highest class first") { store in
            let node = try await Fixture.node(store, maxConcurrency: 10)
            let batch = Fixture.job(createdAt: 1, class: .batch)
            let standard = Fixture.job(createdAt: 2, class: .standard)
            let interactive = Fixture.job(createdAt: 3, class: .interactive)
            for job in [batch, standard, interactive] { _ = try await store.insert(job) }
            let order = try await leaseOneByOne(store, node: node, count: 3, from: 10)
            try require(order == [interactive.id, standard.id, batch.id], "interactive, standard, batch: \(order)")
        },
        Check("a lease with headroom keeps the last free slots for live traffic") { store in
            let node = try await Fixture.node(store, maxConcurrency: 3)
            let keep = LeaseHeadroom(slots: 1, minimumRank: PriorityClass.standard.rank)
            let lines = (0..<4).map { Fixture.job(createdAt: Double($0), class: .batch) }
            for job in lines { _ = try await store.insert(job) }
            let first = try await store.lease(nodeID: node.id, limit: 3, now: Fixture.at(10), headroom: keep)
            try require(first.map(\.job.id) == [lines[0].id, lines[1].id], "two batch jobs, one slot kept: \(first.map(\.job.id))")
            let none = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(11), headroom: keep)
            try require(none.isEmpty, "the kept slot takes no batch job")
            let live = Fixture.job(createdAt: 12, class: .standard)
            _ = try await store.insert(live)
            let kept = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(13), headroom: keep)
            try require(kept.map(\.job.id) == [live.id], "a standard job takes the kept slot")
            // Without headroom a freed slot takes the next batch job.
            _ = try await store.complete(first[0].lease, with: .succeeded(result: Data(), usage: nil), now: Fixture.at(14))
            let open = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(15), headroom: nil)
            try require(open.map(\.job.id) == [lines[2].id], "the next batch job: \(open.map(\.job.id))")
        },
        Check("interleave keys by weight within a class") { store in
            let node = try await Fixture.node(store, maxConcurrency: 50)
            // Key A queues ten, then key B two: B's wait behind A's one job, not all ten.
            let flood = (0..<10).map { Fixture.job(createdAt: Double($0), key: "a") }
            let late = (0..<2).map { Fixture.job(createdAt: 10 + Double($0), key: "b") }
            for job in flood + late { _ = try await store.insert(job) }
            let firstFour = try await leaseOneByOne(store, node: node, count: 4, from: 100)
            try require(
                firstFour == [flood[0].id, late[0].id, flood[1].id, late[1].id], "A, B, A, B: \(firstFour.map { ids(flood, late, $0) })")
            let rest = try await leaseOneByOne(store, node: node, count: 8, from: 200)
            try require(rest == flood[2...].map(\.id), "then A's others, oldest first")

            // Weight 2 against weight 1: two of C's for one of D's while both wait.
            let heavy = (0..<6).map { Fixture.job(createdAt: 20 + Double($0), key: "c", weight: 2) }
            let light = (0..<3).map { Fixture.job(createdAt: 30 + Double($0), key: "d") }
            for job in heavy + light { _ = try await store.insert(job) }
            let six = try await leaseOneByOne(store, node: node, count: 6, from: 250)
            let heavyLeased = six.filter { id in heavy.contains { $0.id == id } }.count
            try require(heavyLeased == 4, "4 of the first 6 are the weight-2 key's, got \(heavyLeased)")
        },
        Check("a job waiting long enough rises one class") { store in
            let node = try await Fixture.node(store, maxConcurrency: 10)
            let waiting = Fixture.job(createdAt: 0, key: "a", class: .batch)
            let standard = Fixture.job(createdAt: 1, key: "b", class: .standard)
            for job in [waiting, standard] { _ = try await store.insert(job) }
            try require(try await store.promote(waitingSince: Fixture.at(-1), now: Fixture.at(2)) == 0, "nothing waited long enough yet")
            try require(try await store.promote(waitingSince: Fixture.at(0), now: Fixture.at(60)) == 1, "the batch job rises")
            let risen = try require(try await store.job(waiting.id), "the job is there")
            try require(risen.priorityClass == .standard, "it is standard now: \(risen.priority)")
            try require(risen.scheduling.classSince == Fixture.at(60), "it entered its class at the promotion")
            // It has waited longest: first among the standard jobs, and it does not rise again at once.
            try require(try await store.promote(waitingSince: Fixture.at(0.5), now: Fixture.at(61)) == 0, "one class per wait")
            let order = try await leaseOneByOne(store, node: node, count: 2, from: 70)
            try require(order == [waiting.id, standard.id], "the promoted job first: \(order)")
        },
        Check("a withdrawal for a spill never meets a lease") { store in
            let nodes = try await withThrowingTaskGroup(of: Node.self) { group in
                for i in 0..<3 { group.addTask { try await Fixture.node(store, maxConcurrency: 100, at: Double(i)) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let jobs = (0..<60).map { Fixture.job(createdAt: Double($0)) }
            for job in jobs { _ = try await store.insert(job) }
            async let leased: [JobID] = withThrowingTaskGroup(of: [JobID].self) { group in
                for node in nodes {
                    group.addTask {
                        var mine: [JobID] = []
                        for round in 0..<20 {
                            mine += try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(100 + Double(round))).map(\.job.id)
                        }
                        return mine
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
            var withdrawn: Set<JobID> = []
            for job in jobs.reversed() {
                let after = try await store.withdraw(job.id, now: Fixture.at(100))
                if after.state == .failed {
                    try require(after.errorCode == JobErrorCode.spilled, "a withdrawn job says why: \(after.errorCode ?? "-")")
                    withdrawn.insert(job.id)
                } else {
                    try require(after.state == .leased, "a job not withdrawn was leased: \(after.state)")
                }
            }
            let taken = Set(try await leased)
            try require(taken.isDisjoint(with: withdrawn), "no job both leased and withdrawn")
            try require(taken.count + withdrawn.count == jobs.count, "every job leased or withdrawn")
            // A leased job is not withdrawn later either.
            if let one = taken.first {
                try require(try await store.withdraw(one, now: Fixture.at(200)).state == .leased, "a leased job stays leased")
            }
        },
        Check("a job offered to one node first waits for it, then goes to any") { store in
            let first = try await Fixture.node(store, maxConcurrency: 10)
            let other = try await Fixture.node(store, maxConcurrency: 10, at: 1)
            var offered = Fixture.job(createdAt: 0)
            offered.scheduling.preferredNode = first.id
            offered.scheduling.preferredUntil = Fixture.at(10.05)
            offered.scheduling.affinity = .prefix
            _ = try await store.insert(offered)
            let early = try await store.lease(nodeID: other.id, limit: 5, now: Fixture.at(10))
            try require(early.isEmpty, "another node does not take it within the offer")
            let mine = try await store.lease(nodeID: first.id, limit: 5, now: Fixture.at(10.01))
            try require(mine.map(\.job.id) == [offered.id], "the node offered it takes it")
            try require(mine.first?.job.scheduling.affinity == .prefix, "the job says why it went there")

            var late = Fixture.job(createdAt: 1)
            late.scheduling.preferredNode = first.id
            late.scheduling.preferredUntil = Fixture.at(20.05)
            _ = try await store.insert(late)
            let after = try await store.lease(nodeID: other.id, limit: 5, now: Fixture.at(20.06))
            try require(after.map(\.job.id) == [late.id], "after the offer any node takes it")
        },
        Check("a key's queue is capped") { store in
            let node = try await Fixture.node(store, maxConcurrency: 10)
            _ = try await store.insert(Fixture.job(createdAt: 0, key: "a"), maxQueued: 2)
            _ = try await store.insert(Fixture.job(createdAt: 1, key: "a"), maxQueued: 2)
            _ = try await store.insert(Fixture.job(createdAt: 2, key: "b"), maxQueued: 2)
            var refusal: MizanError?
            do {
                _ = try await store.insert(Fixture.job(createdAt: 3, key: "a"), maxQueued: 2)
            } catch let error as MizanError {
                refusal = error
            }
            try require(
                refusal?.code == .rateLimited && refusal?.retryAfter != nil,
                "a third job of a key capped at 2 is refused: \(String(describing: refusal))")
            _ = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(10))
            let again = try await store.insert(Fixture.job(createdAt: 4, key: "a"), maxQueued: 2)
            try require(again.inserted, "once one left the queue, the key may queue again")
        },
    ]

    /// Leases one job at a time, `count` times, from `from` seconds on.
    static func leaseOneByOne(_ store: any DispatchStore, node: Node, count: Int, from: Double) async throws -> [JobID] {
        var order: [JobID] = []
        for step in 0..<count {
            order += try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(from + Double(step) * 0.01)).map(\.job.id)
        }
        return order
    }

    /// A job's name in a message: `a3` or `b0`.
    private static func ids(_ first: [Job], _ second: [Job], _ id: JobID) -> String {
        if let index = first.firstIndex(where: { $0.id == id }) { return "a\(index)" }
        if let index = second.firstIndex(where: { $0.id == id }) { return "b\(index)" }
        return "?"
    }
}

extension Fixture {
    /// A job of one key in one class.
    static func job(createdAt: Double, key: String = "key-1", weight: Int = 1, class priority: PriorityClass = .standard) -> Job {
        var job = job(createdAt: createdAt, priority: priority.rank)
        job.apiKeyID = key
        job.scheduling.weight = weight
        return job
    }
}
