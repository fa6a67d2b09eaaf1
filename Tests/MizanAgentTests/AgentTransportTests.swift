import Foundation
import Logging
import MizanAgent
import MizanCore
import MizanStore
import MizanTestSupport
import Testing

@Suite("Agent transports: the persistent channel, HTTP, and the fallback between them")
struct AgentTransportTests {
    @Test(arguments: AgentClient.Transport.allCases)
    func servesJSONAndStreams(over transport: AgentClient.Transport) async throws {
        try await withStack { stack in
            let logs = CapturingLogHandler.Sink()
            let agent = RunningAgent.start(
                stack.configuration(
                    tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken(), transport: transport),
                logger: Logger(label: "mizan.agent") { _ in CapturingLogHandler(sink: logs) })
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            #expect(try await stack.chat().status == 200)
            let stream = try await stack.chat(stream: true)
            #expect(stream.status == 200 && stream.text.hasSuffix("data: [DONE]\n\n"))
            #expect(agent.agent.client.usesChannel == (transport == .channel))
            let overChannel = logs.all.contains { $0.message == "connected to the gateway over the agent channel" }
            #expect(overChannel == (transport == .channel))
            #expect(!logs.all.contains { $0.message.contains("unavailable") })
            try await agent.stop()
        }
    }

    @Test func fallsBackToHTTPWhereTheGatewayHasNoChannel() async throws {
        try await withStack(gatewayConfiguration: .init(agentChannel: false)) { stack in
            let logs = CapturingLogHandler.Sink()
            let agent = RunningAgent.start(
                stack.configuration(tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken()),
                logger: Logger(label: "mizan.agent") { _ in CapturingLogHandler(sink: logs) })
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            #expect(try await stack.chat().status == 200)
            #expect(try await stack.chat(stream: true).status == 200)
            #expect(!agent.agent.client.usesChannel)
            let warnings = logs.all.filter { $0.message == "the agent channel is unavailable; using the HTTP agent API" }
            #expect(warnings.count == 1, "said once: \(logs.all.map(\.message))")
            #expect(warnings.first?.metadata["mizan.reason"]?.contains("404") == true)
            try await agent.stop()
        }
    }

    @Test func reopensItsChannelWhenTheGatewayComesBack() async throws {
        let port = try freePort()
        let store = InMemoryStore()
        let logs = CapturingLogHandler.Sink()
        let tokenFile = try temporaryTokenFile()
        // A gateway, then another on the same port and store (a restart): the agent's channel
        // breaks with the first and opens again to the second, and it serves on.
        // A handler of its own: each stack has a mock provider of its own on another port.
        let handler = FunctionHandler(models: ["mock-model"]) { job in JobResult(body: chatAnswer("still here", model: job.model)) }
        let agent = try await withStack(gatewayPort: port, store: store) { stack in
            let agent = RunningAgent.start(
                stack.configuration(tokenFile: tokenFile, registrationToken: try await stack.registrationToken()), handler: handler,
                logger: Logger(label: "mizan.agent") { _ in CapturingLogHandler(sink: logs) })
            try await waitUntil("the agent serves", poll: .milliseconds(20)) { try await stack.serves() }
            #expect(try await stack.chat().status == 200)
            return agent
        }
        try await withStack(gatewayPort: port, store: store) { stack in
            try await waitUntil("the agent reopens its channel", timeout: .seconds(30), poll: .milliseconds(50)) {
                logs.all.filter { $0.message == "connected to the gateway over the agent channel" }.count >= 2
            }
            let answer = try await stack.chat(timeout: .seconds(30))
            #expect(answer.status == 200, "\(answer.text) \(logs.all.map(\.message))")
            #expect(agent.agent.client.usesChannel)
            try await agent.stop()
        }
    }
}
