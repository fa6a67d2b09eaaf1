import Foundation
import Logging
import MizanAgent
import MizanTestSupport
import ServiceLifecycle
import Testing

/// The README's shortest agent, as the README writes it (but for `.byModel` naming only the
/// function, and no process signals in a test): it must compile against the public API and answer.
func readmeAgent(configuration: Agent.Configuration, logger: Logger) -> ServiceGroup {
    let hello = FunctionHandler(models: ["hello"]) { job in  // answers with the endpoint's JSON
        JobResult(
            body: Data(
                #"{"object":"chat.completion","model":"hello","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}]}"#
                    .utf8))
    }
    let agent = Agent(configuration: configuration, handler: .byModel(["hello": hello]))
    return ServiceGroup(services: [agent], logger: logger)
}

@Suite("The README's shortest agent")
struct ReadmeAgentTests {
    @Test func answersThroughARealGateway() async throws {
        try await withStack { stack in
            let group = readmeAgent(
                configuration: stack.configuration(
                    tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken()),
                logger: Logger(label: "readme-agent"))
            let running = Task { try await group.run() }
            defer { running.cancel() }
            try await waitUntil("the agent serves hello", poll: .milliseconds(20)) { try await stack.serves("hello") }
            let answer = try await stack.chat(model: "hello")
            #expect(answer.status == 200 && content(answer.body) == "Hello!", "\(answer.text)")
            await group.triggerGracefulShutdown()
            _ = await running.result
        }
    }
}
