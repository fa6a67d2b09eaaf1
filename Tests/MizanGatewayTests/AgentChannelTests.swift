import AsyncHTTPClient
import Foundation
import MizanCore
import MizanGateway
import MizanProvider
import MizanTestSupport
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

/// A node's end of the channel for wire-level tests: frames out, replies in, by id.
final class ChannelPeer: Sendable {
    let upload: AsyncStream<ByteBuffer>.Continuation
    let status: Int
    private final class Inbox: Sendable {
        let frames = Mutex<[AgentWire.ChannelFrame]>([])
        let ended = Mutex(false)
    }
    private let inbox = Inbox()
    private let reader: Task<Void, Never>

    /// Opens a channel with `token`.
    static func open(port: Int, token: String) async throws -> ChannelPeer {
        let (stream, upload) = AsyncStream<ByteBuffer>.makeStream()
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/agent/v1/channel")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Content-Type", value: "application/x-ndjson")
        request.body = .stream(stream, length: .unknown)
        let response = try await ProviderClient.shared.httpClient.execute(request, timeout: .seconds(10))
        return ChannelPeer(upload: upload, response: response)
    }

    private init(upload: AsyncStream<ByteBuffer>.Continuation, response: HTTPClientResponse) {
        self.upload = upload
        self.status = Int(response.status.code)
        let inbox = inbox
        self.reader = Task {
            var text = ""
            do {
                for try await buffer in response.body {
                    text += String(buffer: buffer)
                    while let newline = text.firstIndex(of: "\n") {
                        let line = String(text[..<newline])
                        text = String(text[text.index(after: newline)...])
                        if let frame = try? AgentWire.decoder().decode(AgentWire.ChannelFrame.self, from: Data(line.utf8)) {
                            inbox.frames.withLock { $0.append(frame) }
                        } else {
                            inbox.frames.withLock { $0.append(AgentWire.ChannelFrame(.ping, id: -1)) }  // an unreadable line
                        }
                    }
                }
            } catch {}
            inbox.ended.withLock { $0 = true }
        }
    }

    func send(_ frame: AgentWire.ChannelFrame) throws {
        var data = try AgentWire.encoder().encode(frame)
        data.append(0x0A)
        upload.yield(ByteBuffer(bytes: data))
    }

    func sendRaw(_ text: String) { upload.yield(ByteBuffer(string: text)) }

    /// The reply to call `id`, waiting up to `timeout`.
    func reply(_ id: Int, timeout: Duration = .seconds(10)) async throws -> AgentWire.ChannelFrame {
        let until = ContinuousClock.now + timeout
        while ContinuousClock.now < until {
            if let frame = inbox.frames.withLock({ $0.first { $0.operation == .reply && $0.id == id } }) { return frame }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw HarnessError("no reply to call \(id) within \(timeout)")
    }

    /// Every frame read so far.
    var received: [AgentWire.ChannelFrame] { inbox.frames.withLock { $0 } }

    func hasReply(_ id: Int) -> Bool { inbox.frames.withLock { $0.contains { $0.operation == .reply && $0.id == id } } }
    var unreadable: Int { inbox.frames.withLock { $0.filter { $0.id == -1 }.count } }
    var hasEnded: Bool { inbox.ended.withLock { $0 } }

    /// Ends the node's side; the gateway ends its side once its calls are answered.
    func close() { upload.finish() }

    func waitForEnd(timeout: Duration = .seconds(10)) async -> Bool {
        let until = ContinuousClock.now + timeout
        while ContinuousClock.now < until, !hasEnded { try? await Task.sleep(for: .milliseconds(10)) }
        return hasEnded
    }
}

@Suite("The agent channel on the wire")
struct AgentChannelTests {
    static func lease(_ id: Int, wait: Double = 10) -> AgentWire.ChannelFrame {
        var frame = AgentWire.ChannelFrame(.lease, id: id)
        frame.lease = AgentWire.LeaseRequest(limit: 1, waitSeconds: wait)
        return frame
    }

    @Test func callsAreAnsweredAsTheirHTTPEndpointsAnswer() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (nodeID, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            #expect(channel.status == 200)
            try channel.send(AgentWire.ChannelFrame(.ping, id: 1))
            #expect(try await channel.reply(1).status == 200)

            var heartbeat = AgentWire.ChannelFrame(.heartbeat, id: 2)
            heartbeat.heartbeat = AgentWire.HeartbeatRequest(report: NodeReport(models: ["local"], maxConcurrency: 2))
            try channel.send(heartbeat)
            #expect(try await channel.reply(2).heartbeatReply?.node.id.description == nodeID)

            // A standing lease is answered when a job arrives.
            try channel.send(Self.lease(3))
            try await Task.sleep(for: .milliseconds(200))
            #expect(!channel.hasReply(3), "the lease waits for work")
            async let answer = gateway.chat(model: "local")
            let leased = try #require(try await channel.reply(3).leased?.jobs.first)
            var complete = AgentWire.ChannelFrame(.complete, id: 4)
            complete.jobID = leased.jobID
            complete.complete = AgentWire.CompleteRequest(
                attempt: leased.attempt, result: chatAnswerData("over the channel", model: "local"),
                usage: TokenUsage(promptTokens: 2, completionTokens: 3))
            try channel.send(complete)
            #expect(try await channel.reply(4).outcome?.state == .succeeded)
            let client = try await answer
            #expect(client.status == 200 && client.text.contains("over the channel"))

            // Fenced as over HTTP: the same report again is refused with 409, a bad attempt with 400.
            complete.id = 5
            try channel.send(complete)
            let again = try await channel.reply(5)
            #expect(again.status == 409 && again.error?.code == "lease_conflict")
            complete.id = 6
            complete.complete?.attempt = 0
            try channel.send(complete)
            #expect(try await channel.reply(6).status == 400)

            // A frame that is not JSON, or lacks its body, is refused by id; the channel goes on.
            channel.sendRaw("{\"op\":\"lease\",\"id\":7}\n")
            #expect(try await channel.reply(7).status == 400)
            channel.sendRaw("not json\n")
            channel.sendRaw("{\"op\":\"launch\",\"id\":8}\n")
            #expect(try await channel.reply(8).status == 400)
            try channel.send(AgentWire.ChannelFrame(.ping, id: 9))
            #expect(try await channel.reply(9).status == 200)

            // Revoked: the gateway ends the node's channel at once, and a new one is refused.
            _ = try await gateway.send(.DELETE, "/admin/v1/nodes/\(nodeID)", token: Harness.adminToken)
            #expect(await channel.waitForEnd(), "revocation ends the open channel")
            let reopened = try await ChannelPeer.open(port: gateway.port, token: token)
            #expect(reopened.status == 401)
        }
    }

    @Test func aCancelledOrClosedLeaseTakesNothing() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            let first = try await ChannelPeer.open(port: gateway.port, token: token)
            try first.send(Self.lease(1))
            try await Task.sleep(for: .milliseconds(100))
            try first.send(AgentWire.ChannelFrame(.cancel, id: 1))
            let second = try await ChannelPeer.open(port: gateway.port, token: token)
            try second.send(Self.lease(1, wait: 1))
            #expect(try await second.reply(1).leased?.jobs.isEmpty == true)
            second.close()
            #expect(await second.waitForEnd())
            // Neither the cancelled lease nor the closed channel's takes the job.
            let client = Task { try await gateway.chat(model: "local", timeout: .seconds(20)) }
            #expect(try await eventually { try await gateway.gateway.dispatcher.jobs(state: .accepted, limit: 10).count == 1 })
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await gateway.gateway.dispatcher.jobs(state: .accepted, limit: 10).count == 1, "nobody took it")
            #expect(!first.hasReply(1))
            try first.send(Self.lease(2))
            let job = try #require(try await first.reply(2).leased?.jobs.first)
            var fail = AgentWire.ChannelFrame(.fail, id: 3)
            fail.jobID = job.jobID
            fail.fail = AgentWire.FailRequest(attempt: job.attempt, failure: .init(code: "nope", message: "not today", retryable: false))
            try first.send(fail)
            #expect(try await first.reply(3).outcome?.state == .failed)
            #expect(try await client.value.status == 502)
            first.close()
            #expect(await first.waitForEnd())
        }
    }

    @Test func aStreamsEventsReachItsClient() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            try channel.send(Self.lease(1))
            let client = Task { try await gateway.chat(model: "local", stream: true) }
            let job = try #require(try await channel.reply(1).leased?.jobs.first)
            #expect(job.stream)
            for (index, word) in ["one ", "two"].enumerated() {
                var frame = AgentWire.ChannelFrame(.stream, id: 2)
                frame.jobID = job.jobID
                frame.attempt = job.attempt
                frame.data = #"data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\#(word)"}}]}"# + "\n\n"
                if index == 1 { frame.data! += "data: [DONE]\n\n" }
                try channel.send(frame)
            }
            #expect(!channel.hasReply(2), "the stream's reply comes after its last frame")
            var last = AgentWire.ChannelFrame(.stream, id: 2)
            last.jobID = job.jobID
            last.attempt = job.attempt
            last.end = true
            try channel.send(last)
            #expect(try await channel.reply(2).status == 200)
            let answer = try await client.value
            #expect(
                answer.status == 200 && answer.text.contains("one ") && answer.text.contains("two")
                    && answer.text.hasSuffix("data: [DONE]\n\n"))
            // A stream for a lease the node does not hold is refused at once.
            var stray = AgentWire.ChannelFrame(.stream, id: 3)
            stray.jobID = job.jobID
            stray.attempt = job.attempt + 1
            stray.data = "data: {}\n\n"
            try channel.send(stray)
            #expect(try await channel.reply(3).status == 409)
            channel.close()
            #expect(await channel.waitForEnd())
        }
    }

    @Test func aFrameTooLongEndsTheChannelAndOtherCredentialsAreRefused() async throws {
        try await withGateway(configuration: .init(maxBodyBytes: 1024)) { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            let channel = try await ChannelPeer.open(port: gateway.port, token: token)
            channel.sendRaw(String(repeating: "x", count: 200_000))
            #expect(try await channel.reply(0).status == 413)
            #expect(await channel.waitForEnd())
            for wrong in [gateway.apiKey, Harness.adminToken, "mzn_node_nope"] {
                #expect(try await ChannelPeer.open(port: gateway.port, token: wrong).status == 401)
            }
        }
        try await withGateway(configuration: .init(agentChannel: false)) { (gateway: Harness) async throws in
            let (_, token) = try await gateway.registerNode(models: ["local"])
            #expect(try await ChannelPeer.open(port: gateway.port, token: token).status == 404)
        }
    }
}

/// A chat completion answering `text`.
func chatAnswerData(_ text: String, model: String) -> Data {
    let answer = ChatCompletionResponse(
        id: "chatcmpl-channel", created: 0, model: model,
        choices: [.init(index: 0, message: ChatMessage(role: "assistant", content: text), finishReason: "stop")],
        usage: ChatUsage(promptTokens: 2, completionTokens: 3))
    return try! JSONEncoder().encode(answer)
}
