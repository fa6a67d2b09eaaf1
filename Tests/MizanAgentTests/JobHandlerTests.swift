import Foundation
import MizanAgent
import MizanCore
import MizanTestSupport
import Synchronization
import Testing

/// A chat completion answering `text`, as a handler returns it.
func chatAnswer(_ text: String, model: String, prompt: Int = 3, completion: Int = 5) -> Data {
    let answer: [String: Any] = [
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "choices": [["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": "stop"]],
        "usage": ["prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion],
    ]
    return try! JSONSerialization.data(withJSONObject: answer)
}

/// The content of a chat completion's first choice.
func content(_ body: Data) -> String? {
    let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any]
    let choice = (object?["choices"] as? [[String: Any]])?.first
    return (choice?["message"] as? [String: Any])?["content"] as? String
}

/// Counts a handler's calls.
final class Calls: Sendable {
    let count = Atomic<Int>(0)
    let cancelled = Atomic<Bool>(false)
    func next() -> Int { count.add(1, ordering: .relaxed).newValue }
}

@Suite("Job handlers: a node's jobs served by Swift code")
struct JobHandlerTests {
    /// Starts an agent with `handler` on the stack and waits until it serves `model`.
    func start(_ stack: AgentStack, _ handler: any JobHandler, serving model: String) async throws -> RunningAgent {
        let agent = RunningAgent.start(
            stack.configuration(tokenFile: try temporaryTokenFile(), registrationToken: try await stack.registrationToken()),
            handler: handler)
        try await waitUntil("the agent serves \(model)", poll: .milliseconds(20)) { try await stack.serves(model) }
        return agent
    }

    @Test func aFunctionAnswersThroughTheGatewayAndItsUsageIsRecorded() async throws {
        try await withStack { stack in
            let echo = FunctionHandler(models: ["echo"]) { job in
                let request = try JSONSerialization.jsonObject(with: job.body) as? [String: Any]
                let said = ((request?["messages"] as? [[String: Any]])?.last?["content"] as? String) ?? ""
                return JobResult(
                    body: chatAnswer("You said: \(said)", model: job.model), usage: TokenUsage(promptTokens: 3, completionTokens: 5))
            }
            let agent = try await start(stack, echo, serving: "echo")
            let answer = try await stack.chat(model: "echo")
            #expect(answer.status == 200)
            #expect(content(answer.body) == "You said: hi")
            // The usage record is the handler's figure.
            #expect(
                try await eventually {
                    let usage = try await sendHTTP(.GET, stack.gatewayURL + "/admin/v1/usage", token: "admin-token-for-agent-tests")
                    let rows = (try JSONSerialization.jsonObject(with: usage.body) as? [String: Any])?["data"] as? [[String: Any]] ?? []
                    return rows.contains { $0["model"] as? String == "echo" && $0["completionTokens"] as? Int == 5 }
                })
            try await agent.stop()
        }
    }

    @Test func aStreamingFunctionsEventsReachTheClientInOrder() async throws {
        try await withStack { stack in
            let streamer = FunctionHandler(
                models: ["counter"], respond: { _ in throw JobFailure.final("unused", "not called") },
                stream: { job, events in
                    for word in ["one", "two", "three"] {
                        try await events.send(
                            #"{"object":"chat.completion.chunk","model":"\#(job.model)","choices":[{"index":0,"delta":{"content":"\#(word) "}}]}"#
                        )
                    }
                    try await events.send("[DONE]")
                    return TokenUsage(promptTokens: 2, completionTokens: 3)
                })
            let agent = try await start(stack, streamer, serving: "counter")
            let answer = try await stack.chat(model: "counter", stream: true)
            let text = String(decoding: answer.body, as: UTF8.self)
            #expect(answer.status == 200)
            let one = try #require(text.range(of: "one "), "the first event: \(text)")
            let three = try #require(text.range(of: "three "), "the last event: \(text)")
            #expect(one.lowerBound < three.lowerBound)
            #expect(text.contains("data: [DONE]"))
            try await agent.stop()
        }
    }

    @Test func aRetryableFailureIsTriedAgainAndAFinalOneAnswersTheClient() async throws {
        try await withStack { stack in
            let calls = Calls()
            let flaky = FunctionHandler(models: ["flaky", "broken"]) { job in
                if job.model == "broken" { throw JobFailure.final("bad_input", "The rules do not cover this request.") }
                if calls.next() == 1 { throw JobFailure.retryable("warming_up", "The model is loading.") }
                return JobResult(body: chatAnswer("ready", model: job.model))
            }
            let agent = try await start(stack, flaky, serving: "flaky")
            let retried = try await stack.chat(model: "flaky")
            #expect(retried.status == 200, "the second attempt answered")
            #expect(content(retried.body) == "ready")
            #expect(calls.count.load(ordering: .relaxed) == 2)
            let refused = try await stack.chat(model: "broken")
            #expect(refused.status == 502)
            #expect(String(decoding: refused.body, as: UTF8.self).contains("The rules do not cover this request."))
            try await agent.stop()
        }
    }

    @Test func aClientLeavingCancelsTheHandlersTask() async throws {
        try await withStack { stack in
            let calls = Calls()
            let slow = FunctionHandler(models: ["slow"]) { job in
                _ = calls.next()
                try await withTaskCancellationHandler {
                    try await Task.sleep(for: .seconds(60))
                } onCancel: {
                    calls.cancelled.store(true, ordering: .relaxed)
                }
                return JobResult(body: chatAnswer("late", model: job.model))
            }
            let agent = try await start(stack, slow, serving: "slow")
            // The client leaves once the handler runs its job.
            let client = Task { try await stack.chat(model: "slow", timeout: .seconds(60)) }
            try await waitUntil("the handler runs the job", timeout: .seconds(30)) { calls.count.load(ordering: .relaxed) == 1 }
            client.cancel()
            _ = await client.result
            #expect(try await eventually(timeout: .seconds(30)) { calls.cancelled.load(ordering: .relaxed) }, "the handler was cancelled")
            #expect(calls.count.load(ordering: .relaxed) == 1, "and not tried again")
            try await agent.stop()
        }
    }

    @Test func oneNodeServesAFunctionAndALocalServerByModel() async throws {
        try await withStack { stack in
            let echo = FunctionHandler(models: ["echo"]) { job in JobResult(body: chatAnswer("from Swift", model: job.model)) }
            let router: ModelRouter = .byModel(["echo": echo, "mock-model": .provider(stack.providerURL)])
            let catalog = try await router.catalog()
            #expect(catalog.models == ["echo", "mock-model"] && catalog.healthy)
            let agent = try await start(stack, router, serving: "echo")
            #expect(try await stack.serves("mock-model"), "one node reports both models")
            let swift = try await stack.chat(model: "echo")
            #expect(content(swift.body) == "from Swift")
            let served = try await stack.chat(model: "mock-model")
            #expect(served.status == 200)
            #expect(try await stack.providerStats()["requests"] == 1, "the local server got the mock model's job only")
            let refusal = await #expect(throws: JobFailure.self) {
                _ = try await router.respond(to: AgentJob(model: "other", body: Data("{}".utf8)))
            }
            #expect(refusal?.code == "model_not_served" && refusal?.retryable == false)
            try await agent.stop()
        }
    }
}
