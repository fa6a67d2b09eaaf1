import Foundation
import MizanCore
import MizanStore

extension StoreConformance {
    static let registryChecks: [Check] = [
        Check("registration token works once") { store in
            let registration = Fixture.hash("reg")
            let created = try await store.createNode(Node(name: "gpu-1", createdAt: Fixture.at(0)), registrationTokenHash: registration)
            try require(created.status == .pending, "a new node is pending")
            let token = Fixture.hash("tok")
            let report = NodeReport(models: ["llama3", "qwen"], maxConcurrency: 3, health: .healthy, inFlight: 0, labels: ["gpu": "a100"])
            let active = try await store.registerNode(
                registrationTokenHash: registration, nodeTokenHash: token, report: report, now: Fixture.at(1))
            try require(active.id == created.id && active.status == .active, "registration activates the node")
            try require(
                active.models == ["llama3", "qwen"] && active.maxConcurrency == 3 && active.labels == ["gpu": "a100"],
                "the report is applied")
            try require(active.lastSeen == Fixture.at(1), "registration counts as seen")
            try await requireThrows("the registration token works only once", matching: Fixture.isCode(.invalidNodeToken)) {
                _ = try await store.registerNode(
                    registrationTokenHash: registration, nodeTokenHash: Fixture.hash(), report: report, now: Fixture.at(2))
            }
            try await requireThrows("an unknown registration token is refused", matching: Fixture.isCode(.invalidNodeToken)) {
                _ = try await store.registerNode(
                    registrationTokenHash: Fixture.hash(), nodeTokenHash: Fixture.hash(), report: report, now: Fixture.at(2))
            }
            let found = try await store.node(tokenHash: token)
            try require(found?.id == created.id, "the node is found by its token hash")
            try require(try await store.node(tokenHash: registration) == nil, "the registration hash is not a node token")
        },
        Check("heartbeat revoke and list") { store in
            let a = try await Fixture.node(store, models: ["m1"], at: 0)
            let b = try await Fixture.node(store, models: ["m2"], at: 1)
            let beat = try await store.heartbeat(
                a.id,
                report: NodeReport(models: ["m1", "m3"], maxConcurrency: 8, health: .unhealthy, inFlight: 2),
                now: Fixture.at(5)
            )
            try require(
                beat.models == ["m1", "m3"] && beat.maxConcurrency == 8 && beat.health == .unhealthy && beat.inFlight == 2,
                "a heartbeat updates the node: \(beat)")
            try require(beat.lastSeen == Fixture.at(5), "a heartbeat updates last seen")
            let listed = try await store.nodes()
            try require(listed.map(\.id) == [a.id, b.id], "nodes list oldest first")
            _ = try await store.insert(Fixture.job())
            let unhealthy = try await store.lease(nodeID: a.id, limit: 1, now: Fixture.at(6))
            try require(unhealthy.isEmpty, "an unhealthy node gets no jobs")
            let revoked = try await store.revokeNode(b.id, now: Fixture.at(7))
            try require(revoked.status == .revoked, "the node is revoked")
            try require(try await store.node(b.id)?.status == .revoked, "revocation is durable")
            try await requireThrows("a revoked node's heartbeat is refused", matching: Fixture.isCode(.invalidNodeToken)) {
                _ = try await store.heartbeat(b.id, report: NodeReport(models: ["m2"], maxConcurrency: 1), now: Fixture.at(8))
            }
            try await requireThrows("revoking an unknown node is an error", matching: Fixture.isCode(.nodeNotFound)) {
                _ = try await store.revokeNode(NodeID(), now: Fixture.at(8))
            }
            try await requireThrows("an unknown node cannot lease", matching: Fixture.isCode(.nodeNotFound)) {
                _ = try await store.lease(nodeID: NodeID(), limit: 1, now: Fixture.at(8))
            }
        },
        Check("a disconnected node is marked once, comes back, and its leases are taken back") { store in
            let node = try await Fixture.node(store, models: ["m1"], at: 0)
            let other = try await Fixture.node(store, models: ["m1"], at: 0)
            _ = try await store.insert(Fixture.job())
            _ = try await store.insert(Fixture.job(createdAt: 1))
            let mine = try await store.lease(nodeID: node.id, limit: 1, now: Fixture.at(2))
            let theirs = try await store.lease(nodeID: other.id, limit: 1, now: Fixture.at(2))
            try require(mine.count == 1 && theirs.count == 1, "each node leases one job")
            let beat = try await store.heartbeat(node.id, report: NodeReport(models: ["m1"], maxConcurrency: 4), now: Fixture.at(10))
            let seenAgain = try await store.markDisconnected(node.id, unlessSeenAfter: Fixture.at(5), now: Fixture.at(11))
            try require(seenAgain == nil && beat.disconnectedAt == nil, "a node heard from after its channel ended stays connected")
            let marked = try await store.markDisconnected(node.id, unlessSeenAfter: Fixture.at(10), now: Fixture.at(12))
            try require(
                marked?.disconnectedAt == Fixture.at(12), "a node not heard from since is disconnected: \(String(describing: marked))")
            let again = try await store.markDisconnected(node.id, unlessSeenAfter: nil, now: Fixture.at(13))
            try require(again?.disconnectedAt == Fixture.at(12), "a disconnected node keeps its first time")
            let taken = try await store.recoverLeases(of: node.id, now: Fixture.at(14))
            try require(taken.map(\.id) == mine.map(\.job.id) && taken.first?.state == .accepted, "its lease goes back to the queue")
            try require(try await store.job(theirs[0].job.id)?.state == .leased, "another node's lease stands")
            let draining = try await store.heartbeat(
                node.id, report: NodeReport(models: ["m1"], maxConcurrency: 4, draining: true), now: Fixture.at(15))
            try require(draining.disconnectedAt == Fixture.at(12), "a draining heartbeat keeps it disconnected")
            let back = try await store.markConnected(node.id, now: Fixture.at(16))
            try require(back.disconnectedAt == nil && back.lastSeen == Fixture.at(16), "a new channel connects it again")
            let goodbye = try await store.heartbeat(
                node.id, report: NodeReport(models: ["m1"], maxConcurrency: 4, draining: true), now: Fixture.at(17))
            try require(goodbye.disconnectedAt == Fixture.at(17), "a draining heartbeat disconnects a connected node")
            let plain = try await store.heartbeat(node.id, report: NodeReport(models: ["m1"], maxConcurrency: 4), now: Fixture.at(18))
            try require(plain.disconnectedAt == nil, "an ordinary heartbeat connects it")
            try require(try await store.node(node.id)?.disconnectedAt == nil, "as stored")
        },
        Check("pending node cannot lease") { store in
            let pending = try await store.createNode(
                Node(name: "p", models: ["m1"], maxConcurrency: 2), registrationTokenHash: Fixture.hash())
            _ = try await store.insert(Fixture.job())
            let leased = try await store.lease(nodeID: pending.id, limit: 1, now: Fixture.at(1))
            try require(leased.isEmpty, "a node that has not registered gets no jobs")
        },
        Check("a heartbeat's loaded models are stored and read back") { store in
            let node = try await Fixture.node(store, models: ["m1", "m2", "m3"], at: 0)
            try require(node.loadedModels.isEmpty, "a node that reported none has them unknown")
            let loaded = ["m2", "m1", "ünï/cödé:8b"]
            let beat = try await store.heartbeat(
                node.id, report: NodeReport(models: ["m1", "m2", "m3"], maxConcurrency: 4, loadedModels: loaded), now: Fixture.at(1))
            try require(beat.loadedModels == loaded, "the heartbeat's answer holds them, in order: \(beat.loadedModels)")
            try require(try await store.node(node.id)?.loadedModels == loaded, "they are stored")
            try require(try await store.nodes().first { $0.id == node.id }?.loadedModels == loaded, "the list shows them")
            let unknown = try await store.heartbeat(node.id, report: NodeReport(models: ["m1"], maxConcurrency: 4), now: Fixture.at(2))
            try require(unknown.loadedModels.isEmpty, "a report that does not know clears them")
            try require(try await store.node(node.id)?.loadedModels.isEmpty == true, "as stored")
            let registration = Fixture.hash("loaded-reg")
            _ = try await store.createNode(Node(name: "fresh", createdAt: Fixture.at(3)), registrationTokenHash: registration)
            let registered = try await store.registerNode(
                registrationTokenHash: registration, nodeTokenHash: Fixture.hash(),
                report: NodeReport(models: ["m1"], maxConcurrency: 1, loadedModels: ["m1"]), now: Fixture.at(3))
            try require(registered.loadedModels == ["m1"], "registration stores them too")
            try require(try await store.node(registered.id)?.loadedModels == ["m1"], "as stored")
        },
    ]
}
