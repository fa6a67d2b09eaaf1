import Foundation
import Logging
import MizanCore
import MizanGateway
import MizanMockProvider
import MizanStore
import MizanTestSupport
import Testing

@testable import MizanAgent

@Suite("Agent, in process against a gateway and a mock provider")
struct AgentTests {
    @Test func runsNoMoreJobsAtOnceThanItsSlots() async throws {
        try await withStack(.init(latency: .milliseconds(1500))) { stack in
            let agent = RunningAgent.start(
                stack.configuration(
                    tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken(), maxConcurrency: 2))
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<6 { group.addTask { try await stack.chat().status } }
                // Both slots fill while the first jobs run (1.5 s each).
                #expect(try await eventually(poll: .milliseconds(10)) { try await stack.providerStats()["inFlight"] == 2 })
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 200, count: 6))
            let stats = try await stack.providerStats()
            #expect(stats["requests"] == 6)
            #expect(stats["maxInFlight"] == 2, "two slots, both used, never more: \(stats)")
            try await agent.stop()
        }
    }

    @Test func retriesRegistrationUntilTheGatewayComesUp() async throws {
        // The agent starts before anything listens on the gateway's port: registration is
        // retried with backoff until the gateway answers.
        try await withServer({ MockProvider.application(.init(), onServerRunning: $0) }) { providerPort in
            let gateway = Gateway(store: InMemoryStore(), adminToken: "admin", environment: [:])
            let registration = try await gateway.dispatcher.createNode(name: "late").registrationToken
            let port = try freePort()
            let logs = CapturingLogHandler.Sink()
            let agent = RunningAgent.start(
                Agent.Configuration(
                    gatewayURL: "http://127.0.0.1:\(port)", registrationToken: registration, tokenFile: try temporaryTokenFile(),
                    providerURL: "http://127.0.0.1:\(providerPort)/v1", heartbeatInterval: .milliseconds(200)
                ),
                logger: Logger(label: "mizan.agent") { _ in CapturingLogHandler(sink: logs) }
            )
            try await waitUntil("the agent retries", timeout: .seconds(30), poll: .milliseconds(20)) {
                logs.all.filter { $0.message == "registration failed; retrying" }.count >= 2
            }
            try await withServer({ gateway.application(port: port, onServerRunning: $0) }) { _ in
                try await waitUntil("the agent registered", poll: .milliseconds(20)) {
                    try await gateway.dispatcher.healthyNodes().contains { $0.name == "late" }
                }
                try await agent.stop()
            }
        }
    }

    @Test func dropsAReportTheGatewayFencedOffAndServesOn() async throws {
        try await withStack(.init(latency: .seconds(2))) { stack in
            let logs = CapturingLogHandler.Sink()
            let logger = Logger(label: "mizan.agent") { _ in CapturingLogHandler(sink: logs) }
            // Heartbeats far apart and no channel to push the abort on: the node learns of a
            // cancelled job only when it reports it.
            var configuration = stack.configuration(
                tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken(), maxConcurrency: 1)
            configuration.heartbeatInterval = .seconds(60)
            configuration.transport = .http
            let agent = RunningAgent.start(configuration, logger: logger)
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            // The client goes away while the node runs its job: the job is cancelled, and the
            // node's result, refused (409) under the old lease, is dropped rather than retried.
            let client = Task { try await stack.chat() }
            // Generous: on a loaded machine the first lease may take a while.
            try await waitUntil("the job runs on the node", timeout: .seconds(30), poll: .milliseconds(10)) {
                try await stack.providerStats()["inFlight"] == 1
            }
            client.cancel()
            _ = await client.result
            #expect(
                try await eventually {
                    try await stack.gateway.dispatcher.jobs(state: .failed, limit: 10).first?.errorCode == JobErrorCode.cancelled
                })
            let refused = try await eventually(timeout: .seconds(20)) {
                logs.all.contains { $0.message == "report refused: the job moved on" }
            }
            let stats = try await stack.providerStats()
            let states = try await stack.gateway.dispatcher.jobs(limit: 10).map { "\($0.state) \($0.attempt) \($0.errorCode ?? "-")" }
            #expect(refused, "\(logs.all.map { "\($0.message) \($0.metadata)" }) provider: \(stats) jobs: \(states)")
            #expect(!logs.all.contains { $0.message == "report lost" || $0.message == "report failed; retrying" })
            // Its one slot is free again.
            #expect(try await stack.chat().status == 200)
            try await agent.stop()
        }
    }

    @Test func finishesItsJobsWithinTheShutdownGrace() async throws {
        try await withStack(.init(latency: .seconds(1))) { stack in
            let agent = RunningAgent.start(
                stack.configuration(tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken()))
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            async let answer = stack.chat()
            try await waitUntil("the job runs on the node", poll: .milliseconds(10)) { try await stack.providerStats()["inFlight"] == 1 }
            let stopping = Task { try await agent.stop() }
            #expect(try await answer.status == 200, "the running job finished within the grace")
            let outcome = try await stopping.value
            #expect(throws: Never.self) { try outcome.get() }
        }
    }

    @Test func failsWhatOutlivesTheGraceAsRetryable() async throws {
        try await withStack(.init(latency: .seconds(10))) { stack in
            let agent = RunningAgent.start(
                stack.configuration(
                    tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken(),
                    shutdownGrace: .milliseconds(300))
            )
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            let client = Task { try await stack.chat() }
            try await waitUntil("the job runs on the node", poll: .milliseconds(10)) { try await stack.providerStats()["inFlight"] == 1 }
            let started = ContinuousClock.now
            try await agent.stop()
            #expect(ContinuousClock.now - started < .seconds(5), "the agent stopped after its grace, not after the job")
            // Reported retryable: the job went back to the queue for another node, attempt 2
            // (with no node left for its model, its client is then answered 503 instead of waiting).
            let jobs = try await stack.gateway.dispatcher.jobs(limit: 10)
            #expect(jobs.count == 1 && jobs.first?.attempt == 2, "\(jobs.map { ($0.state, $0.attempt) })")
            #expect(jobs.first?.earlierAttempts.map(\.reason) == ["agent_stopped"], "\(jobs.first?.earlierAttempts ?? [])")
            let answer = try await client.value
            #expect(answer.status == 503, "\(answer.text)")
        }
    }

    @Test func reusesItsTokenFileAndWarnsWhenOthersCanReadIt() async throws {
        try await withStack { stack in
            let tokenFile = try temporaryTokenFile()
            let connected = CapturingLogHandler.Sink()
            let first = RunningAgent.start(
                stack.configuration(tokenFile: tokenFile, registrationToken: try await stack.registrationToken()),
                logger: Logger(label: "mizan.agent") { _ in CapturingLogHandler(sink: connected) }
            )
            try await waitUntil("the agent connected", poll: .milliseconds(20)) {
                connected.all.contains { $0.message == "agent connected" }
            }
            try await first.stop()
            let attributes = try FileManager.default.attributesOfItem(atPath: tokenFile)
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "the node token is written for its owner only")
            let token = try String(contentsOfFile: tokenFile, encoding: .utf8)
            #expect(try await stack.gateway.dispatcher.authenticateNode(token: token).models == ["mock-model"])

            // Restarted with no registration token: the saved token is used, and a file others can
            // read is called out.
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: tokenFile)
            let logs = CapturingLogHandler.Sink()
            let logger = Logger(label: "mizan.agent") { _ in CapturingLogHandler(sink: logs) }
            let second = RunningAgent.start(stack.configuration(tokenFile: tokenFile, registrationToken: nil), logger: logger)
            #expect(try await eventually { logs.all.contains { $0.message == "agent connected" } })
            #expect(logs.all.contains { $0.level == .warning && $0.message.contains("the token file can be read by other users") })
            #expect(
                !logs.all.contains { $0.metadata.values.contains { $0.contains(token) } || $0.message.contains(token) },
                "the token is never logged")
            #expect(try await stack.gateway.dispatcher.nodes().count == 1, "no second node was registered")
            // The node said goodbye when the first agent stopped: it serves again once the second connects.
            try await waitUntil("the node serves again", poll: .milliseconds(20)) { try await stack.serves() }
            #expect(try await stack.chat().status == 200)
            try await second.stop()
        }
    }

    @Test func saysPlainlyWhenTheGatewayRefusesItsToken() async throws {
        try await withStack { stack in
            let agent = RunningAgent.start(
                stack.configuration(tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken()))
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            let node = try #require(try await stack.gateway.dispatcher.nodes().first)
            try await stack.gateway.dispatcher.revokeNode(node.id)
            // The agent stops by itself at its next heartbeat, and says why without guessing.
            try await waitUntil("the agent stops", timeout: .seconds(10), poll: .milliseconds(20)) { agent.hasEnded }
            let outcome = try await agent.stop()
            #expect(throws: AgentClientError.self) { try outcome.get() }
            if case .failure(let error) = outcome {
                #expect("\(error)".contains("the node was revoked, or the gateway no longer knows it"), "\(error)")
            }
        }
    }

    @Test func backoffGrowsWithJitterUpToItsCapAndResets() {
        var backoff = Backoff()
        var caps: [Double] = []
        for attempt in 0..<10 {
            let pause = backoff.next()
            let cap = min(5000.0, 100.0 * pow(2.0, Double(attempt)))
            caps.append(cap)
            #expect(pause >= .milliseconds(Int64(cap / 2)) && pause <= .milliseconds(Int64(cap)), "attempt \(attempt): \(pause)")
        }
        #expect(caps.last == 5000, "the pause stops growing at 5 seconds")
        backoff.reset()
        #expect(backoff.next() <= .milliseconds(100))
    }
}
