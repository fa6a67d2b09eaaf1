import Foundation
import MizanCore
import MizanStore
import MizanTestSupport
import Synchronization
import Testing

@testable import MizanDispatch

/// A client that reads slowly holds the node's stream back: what waits for it is bounded.
@Suite("Streams: back-pressure and ownership in the hub")
struct StreamBackPressureTests {
    @Test func aWriterWaitsWhileTheClientsBufferIsFullAndGoesOnAsItReads() async throws {
        let dispatcher = Dispatcher(store: .memory(), configuration: .init(streamBufferBytes: 1024))
        let node = try await dispatcher.enroll()
        let events = try await dispatcher.submitStreaming(DispatchRequest(model: "m1", body: chatBody, stream: true))
        let leased = try #require(try await dispatcher.lease(for: node.node, limit: 1).first)
        let event = String(repeating: "x", count: 400)
        let written = Atomic<Int>(0)
        let writer = Task {
            var stream = try await dispatcher.openStream(leased.lease)
            for _ in 0..<10 {
                try await stream.send([event], end: false)
                written.wrappingAdd(1, ordering: .relaxed)
            }
        }
        // 1,024 bytes hold two 400-byte events and a third that finds the buffer not empty waits.
        try await Task.sleep(for: .milliseconds(300))
        #expect(written.load(ordering: .relaxed) == 2, "the writer waits for the client: \(written.load(ordering: .relaxed)) sent")
        var read = 0
        while read < 10, case .data = await events.next() { read += 1 }
        try await writer.value
        #expect(read == 10 && written.load(ordering: .relaxed) == 10, "every event arrived once the client read")
        events.stop(cancellingJob: true)
    }

    @Test func aSecondAttemptCannotJoinAStreamTheFirstWroteTo() async throws {
        let dispatcher = Dispatcher(store: .memory())
        let hub = dispatcher.streams
        let id = JobID()
        let mailbox = hub.subscribe(id)
        let first = Lease(jobID: id, attempt: 1, nodeID: NodeID())
        let second = Lease(jobID: id, attempt: 2, nodeID: NodeID())
        #expect(hub.claim(id, by: first) == .delivered)
        #expect(hub.claim(id, by: second) == .delivered, "nothing was sent yet: the second may take it over")
        #expect(await hub.publish(id, from: first, .data("a")) == .notOwner, "the first lost it")
        #expect(await hub.publish(id, from: second, .data("b")) == .delivered)
        #expect(hub.claim(id, by: first) == .notOwner, "once the client saw output, no other lease joins")
        hub.revoke(node: second.nodeID)
        #expect(await hub.publish(id, from: second, .data("c")) == .notOwner, "a revoked node's writes are refused")
        guard case .data("b") = await mailbox.next() else {
            Issue.record("the client got the owner's event only")
            return
        }
        mailbox.finish()
    }

    /// A node's writer that waits for a client that stopped reading is released when the job
    /// ends (here its deadline), instead of waiting for ever.
    @Test func aWaitingWriterIsReleasedWhenTheJobEnds() async throws {
        let dispatcher = Dispatcher(store: .memory(), configuration: .init(streamBufferBytes: 1024))
        let node = try await dispatcher.enroll()
        let events = try await dispatcher.submitStreaming(
            DispatchRequest(model: "m1", body: chatBody, stream: true, deadline: .milliseconds(500)))
        let leased = try #require(try await dispatcher.lease(for: node.node, limit: 1).first)
        let writer = Task {
            var stream = try await dispatcher.openStream(leased.lease)
            for _ in 0..<10 { try await stream.send([String(repeating: "x", count: 600)], end: false) }
        }
        let started = ContinuousClock.now
        let outcome = await writer.result
        #expect(throws: MizanError.self) { try outcome.get() }
        // The deadline is half a second; the bound leaves room for a machine under load.
        #expect(ContinuousClock.now - started < .seconds(15), "released at the deadline, not left waiting")
        events.stop(cancellingJob: true)
    }

    @Test func outputRelayedFromAnotherInstanceKeepsLocalLeasesOut() async throws {
        let hub = Dispatcher(store: .memory()).streams
        let id = JobID()
        let mailbox = hub.subscribe(id)
        hub.offer(id, .data("from another instance's node"))
        #expect(hub.claim(id, by: Lease(jobID: id, attempt: 2, nodeID: NodeID())) == .notOwner)
        mailbox.finish()
    }
}
