import AsyncHTTPClient
import Foundation
import MizanCore
import MizanGateway
import MizanTestSupport
import NIOCore
import Synchronization
import Testing

/// Nodes that go away, stop, are revoked or misbehave, seen through the gateway's wire.
@Suite("Node failures noticed in seconds, and hostile nodes held to their lease")
struct NodeFailureTests {
    static let quick = Gateway.Configuration(nodeDisconnectGrace: .milliseconds(500))

    static func lease(_ id: Int, limit: Int = 1, wait: Double = 10) -> AgentWire.ChannelFrame {
        var frame = AgentWire.ChannelFrame(.lease, id: id)
        frame.lease = AgentWire.LeaseRequest(limit: limit, waitSeconds: wait)
        return frame
    }

    static func condition(_ gateway: Harness, _ nodeID: String) async throws -> String? {
        let nodes = try await gateway.send(.GET, "/admin/v1/nodes", token: Harness.adminToken).json["data"] as? [[String: Any]]
        return nodes?.first { $0["id"] as? String == nodeID }?["condition"] as? String
    }

    @Test func aDroppedChannelDisconnectsItsNodeAfterTheGraceRequeuesItsJobAndAnswersItsQueue503() async throws {
        try await withGateway(configuration: Self.quick) { (gateway: Harness) async throws in
            let (nodeID, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            try channel.send(Self.lease(1))
            async let answer = gateway.chat(model: "local")
            let leased = try #require(try await channel.reply(1).leased?.jobs.first)
            #expect(try await Self.condition(gateway, nodeID) == "healthy")
            let dropped = ContinuousClock.now
            channel.close()
            // Within the grace it may come back; after it, it is disconnected and its job requeued.
            #expect(try await eventually(timeout: .seconds(5)) { try await Self.condition(gateway, nodeID) == "disconnected" })
            #expect(ContinuousClock.now - dropped < .seconds(4), "within the grace and moments")
            let job = try #require(try await gateway.gateway.dispatcher.job(leased.jobID))
            #expect(job.state == .accepted && job.attempt == 2)
            // No node serves the model any more: the queued request gets 503 at the next sweep,
            // and a new one at once.
            _ = try await gateway.gateway.sweeper.sweep()
            let queued = try await answer
            #expect(queued.status == 503, "\(queued.text)")
            #expect(try await gateway.chat(model: "local").status == 503)
        }
    }

    @Test func aNodeThatComesBackWithinTheGraceStaysConnected() async throws {
        try await withGateway(configuration: Self.quick) { (gateway: Harness) async throws in
            let (nodeID, token) = try await gateway.registerNode(models: ["local"])
            let first = try await ChannelPeer.open(port: gateway.port, token: token)
            first.close()
            #expect(await first.waitForEnd())
            let second = try await ChannelPeer.open(port: gateway.port, token: token)
            try await Task.sleep(for: .milliseconds(1200))
            #expect(try await Self.condition(gateway, nodeID) == "healthy")
            second.close()
        }
    }

    @Test func goodbyeDisconnectsAtOnceAndADrainingHeartbeatKeepsItSo() async throws {
        try await withGateway(configuration: Self.quick) { (gateway: Harness) async throws in
            let (nodeID, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            var heartbeat = AgentWire.ChannelFrame(.heartbeat, id: 1)
            heartbeat.heartbeat = AgentWire.HeartbeatRequest(report: NodeReport(models: ["local"], maxConcurrency: 1, draining: true))
            try channel.send(heartbeat)
            #expect(try await channel.reply(1).status == 200)
            #expect(try await Self.condition(gateway, nodeID) == "disconnected", "a draining node takes no requests")
            #expect(try await gateway.chat(model: "local").status == 503)
            try channel.send(heartbeat)
            _ = try await channel.reply(1)
            #expect(try await Self.condition(gateway, nodeID) == "disconnected")
            try channel.send(AgentWire.ChannelFrame(.goodbye, id: 2))
            #expect(try await channel.reply(2).status == 200)
            #expect(try await Self.condition(gateway, nodeID) == "disconnected")
            // An ordinary heartbeat (it started again) brings it back.
            heartbeat.heartbeat?.report.draining = false
            heartbeat.id = 3
            try channel.send(heartbeat)
            _ = try await channel.reply(3)
            #expect(try await Self.condition(gateway, nodeID) == "healthy")
            channel.close()
        }
    }

    @Test func aJobWhoseClientLeftIsAbortedOverTheChannelAtOnce() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            try channel.send(Self.lease(1))
            let client = Task { try await gateway.chat(model: "local") }
            let leased = try #require(try await channel.reply(1).leased?.jobs.first)
            client.cancel()
            let left = ContinuousClock.now
            #expect(
                try await eventually(timeout: .seconds(5)) {
                    channel.received.contains { $0.operation == .abort && $0.jobID == leased.jobID && $0.attempt == leased.attempt }
                })
            #expect(ContinuousClock.now - left < .seconds(3), "pushed, not left for a heartbeat (5 s apart)")
            // Its report after the abort is refused as the lease's end.
            var complete = AgentWire.ChannelFrame(.complete, id: 2)
            complete.jobID = leased.jobID
            complete.complete = AgentWire.CompleteRequest(attempt: leased.attempt, result: Data("{}".utf8), usage: nil)
            try channel.send(complete)
            #expect(try await channel.reply(2).status == 409)
            channel.close()
        }
    }

    @Test func aNodeKeepsAFewChannelsTheNewestWinning() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            var channels: [ChannelPeer] = []
            for _ in 0..<5 { channels.append(try await ChannelPeer.open(port: gateway.port, token: token)) }
            #expect(await channels[0].waitForEnd(timeout: .seconds(5)), "the oldest is closed")
            for channel in channels.dropFirst() {
                try channel.send(AgentWire.ChannelFrame(.ping, id: 1))
                #expect(try await channel.reply(1).status == 200)
            }
            for channel in channels { channel.close() }
        }
    }

    /// Node A streams into a client's answer, then is revoked: nothing more of A reaches the
    /// client, and when the job moves to node B, B cannot add its output to A's.
    @Test func aRevokedOrSupersededNodeCannotWriteIntoAClientsStream() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (nodeA, tokenA) = try await gateway.registerNode(models: ["local"], name: "a")
            let (_, tokenB) = try await gateway.registerNode(models: ["local"], name: "b")
            let channelA = try await ChannelPeer.open(port: gateway.port, token: tokenA)
            try channelA.send(Self.lease(1))
            // The client's answer, read as it comes.
            let received = Received()
            let client = Task {
                var request = HTTPClientRequest(url: "http://127.0.0.1:\(gateway.port)/v1/chat/completions")
                request.method = .POST
                request.headers.add(name: "Authorization", value: "Bearer \(gateway.apiKey)")
                request.body = .bytes(ByteBuffer(string: #"{"model":"local","messages":[{"role":"user","content":"hi"}],"stream":true}"#))
                let response = try await gateway.http.execute(request, timeout: .seconds(30))
                for try await buffer in response.body { received.text.withLock { $0 += String(buffer: buffer) } }
            }
            let leased = try #require(try await channelA.reply(1).leased?.jobs.first)
            func frame(_ text: String, id: Int, attempt: Int, end: Bool = false) -> AgentWire.ChannelFrame {
                var frame = AgentWire.ChannelFrame(.stream, id: id)
                frame.jobID = leased.jobID
                frame.attempt = attempt
                frame.data = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\(text)\"}}]}\n\n"
                if end { frame.end = true }
                return frame
            }
            try channelA.send(frame("A-1", id: 2, attempt: 1))
            #expect(try await eventually { received.text.withLock { $0.contains("A-1") } }, "the client sees A's output")
            _ = try await gateway.send(.DELETE, "/admin/v1/nodes/\(nodeA)", token: Harness.adminToken)
            // The revoked node's channel is gone; over HTTP its stream is refused too.
            #expect(await channelA.waitForEnd())
            let late = try await gateway.send(
                .POST, "/agent/v1/jobs/\(leased.jobID)/stream?attempt=1", token: tokenA, body: "data: {\"late\":\"A-2\"}\n\n")
            #expect(late.status == 401)
            // The job goes to B once A's lease is taken back; B's output may not join A's.
            _ = try await gateway.gateway.sweeper.sweep()
            let channelB = try await ChannelPeer.open(port: gateway.port, token: tokenB)
            try channelB.send(Self.lease(1))
            let second = try #require(try await channelB.reply(1).leased?.jobs.first)
            #expect(second.jobID == leased.jobID && second.attempt == 2)
            try channelB.send(frame("B-1", id: 2, attempt: 2))
            let refused = try await channelB.reply(2)
            #expect(refused.status == 409, "\(refused.error?.message ?? "")")
            var fail = AgentWire.ChannelFrame(.fail, id: 3)
            fail.jobID = leased.jobID
            fail.fail = AgentWire.FailRequest(
                attempt: 2, failure: .init(code: "stream_refused", message: "The gateway refused the node's stream.", retryable: false))
            try channelB.send(fail)
            _ = try await channelB.reply(3)
            _ = await client.result
            let text = received.text.withLock { $0 }
            #expect(text.contains("A-1"))
            #expect(!text.contains("A-2") && !text.contains("B-1"), "\(text)")
            channelB.close()
        }
    }

    @Test func aStreamedEventLargerThanTheBodyLimitIsRefused() async throws {
        try await withGateway(configuration: .init(maxBodyBytes: 4096)) { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            try channel.send(Self.lease(1))
            async let answer = gateway.chat(model: "local", stream: true)
            let leased = try #require(try await channel.reply(1).leased?.jobs.first)
            // One event without an end, in frames each under the line limit.
            for index in 0..<4 {
                var frame = AgentWire.ChannelFrame(.stream, id: 2)
                frame.jobID = leased.jobID
                frame.attempt = leased.attempt
                frame.data = (index == 0 ? "data: " : "") + String(repeating: "x", count: 2000)
                try channel.send(frame)
            }
            let refused = try await channel.reply(2)
            #expect(refused.status == 413, "\(refused.error?.message ?? "")")
            // A frame of the refused stream that was on its way is dropped, not taken for a new stream.
            var late = AgentWire.ChannelFrame(.stream, id: 2)
            late.jobID = leased.jobID
            late.attempt = leased.attempt
            late.data = "data: {\"late\":true}\n\n"
            try channel.send(late)
            try channel.send(AgentWire.ChannelFrame(.ping, id: 9))
            #expect(try await channel.reply(9).status == 200)
            #expect(channel.received.filter { $0.operation == .reply && $0.id == 2 }.count == 1, "no second reply for the refused stream")
            // The node gives up as an agent does; the client, who saw nothing, gets the failure.
            var fail = AgentWire.ChannelFrame(.fail, id: 3)
            fail.jobID = leased.jobID
            fail.fail = AgentWire.FailRequest(
                attempt: leased.attempt, failure: .init(code: "stream_refused", message: "Refused.", retryable: false))
            try channel.send(fail)
            _ = try await channel.reply(3)
            #expect(try await answer.status == 502)
            channel.close()
        }
    }

    @Test func aShareOfTheConnectionsIsKeptForClients() async throws {
        try await withGateway(configuration: .init(maxConnections: 6)) { (gateway: Harness) async throws in
            var channels: [ChannelPeer] = []
            for name in ["a", "b"] {
                let (_, token) = try await gateway.registerNode(models: ["local"], name: name)
                for _ in 0..<2 where channels.count < 3 { channels.append(try await ChannelPeer.open(port: gateway.port, token: token)) }
            }
            #expect(channels.allSatisfy { $0.status == 200 } && channels.count == 3)
            let (_, token) = try await gateway.registerNode(models: ["local"], name: "c")
            let refused = try await ChannelPeer.open(port: gateway.port, token: token)
            #expect(refused.status == 503, "half of --max-connections is for nodes' channels")
            #expect(try await gateway.send(.GET, "/v1/models", token: gateway.apiKey).status == 200, "clients still get in")
            for channel in channels { channel.close() }
        }
    }

    @Test func anOversizedEventOnTheHTTPStreamIsRefused() async throws {
        try await withGateway(configuration: .init(maxBodyBytes: 4096)) { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            async let answer = gateway.chat(model: "local", stream: true)
            let leased = try #require(try await gateway.lease(token: token).first)
            let stream = try await gateway.send(
                .POST, "/agent/v1/jobs/\(leased.jobID)/stream?attempt=\(leased.attempt)", token: token,
                body: "data: " + String(repeating: "x", count: 10_000))
            #expect(stream.status == 413, "\(stream.text)")
            let fail = try await gateway.send(
                .POST, "/agent/v1/jobs/\(leased.jobID)/fail", token: token,
                body: #"{"attempt":\#(leased.attempt),"failure":{"code":"stream_refused","message":"Refused.","retryable":false}}"#)
            #expect(fail.status == 200)
            #expect(try await answer.status == 502)
        }
    }

    @Test func aFrameNamingAKeyTwiceIsRefused() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            channel.sendRaw(#"{"op":"ping","op":"goodbye","id":5}"# + "\n")
            let refused = try await channel.reply(5)
            #expect(refused.status == 400 && refused.error?.message.contains("more than once") == true, "\(refused.error?.message ?? "")")
            try channel.send(AgentWire.ChannelFrame(.ping, id: 6))
            #expect(try await channel.reply(6).status == 200, "the channel goes on")
            channel.close()
        }
    }

    /// A node may not bill more tokens than its request could produce: its claim is replaced by
    /// an estimate.
    @Test func aNodesImpossibleUsageIsCountedAsAnEstimate() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            async let answer = gateway.chat(model: "local", extra: #","max_tokens":10"#)
            let leased = try #require(try await gateway.lease(token: token).first)
            let request = AgentWire.CompleteRequest(
                attempt: leased.attempt, result: chatAnswerData("hi", model: "local"),
                usage: TokenUsage(promptTokens: 1_000_000_000, completionTokens: 1_000_000_000))
            let body = String(decoding: try AgentWire.encoder().encode(request), as: UTF8.self)
            #expect(try await gateway.send(.POST, "/agent/v1/jobs/\(leased.jobID)/complete", token: token, body: body).status == 200)
            #expect(try await answer.status == 200)
            func row() async throws -> [String: Any]? {
                let rows = try await gateway.send(.GET, "/admin/v1/usage", token: Harness.adminToken).json["data"] as? [[String: Any]]
                return rows?.first { $0["model"] as? String == "local" }
            }
            #expect(try await eventually { try await row() != nil })
            let row = try #require(try await row())
            #expect((row["promptTokens"] as? Int ?? .max) < 1000 && (row["completionTokens"] as? Int ?? .max) <= 10, "\(row)")
        }
    }
}

/// Text a test's client received so far.
final class Received: Sendable {
    let text = Mutex("")
}
