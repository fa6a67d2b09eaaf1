// A Mizan agent node whose "model" is a Swift function: `rules` answers a chat request by a few
// rules, as JSON or as a stream. Everything else — registration, heartbeats, slots, leasing,
// reports, cancellation, drain — is the Agent's.
//
//   MIZAN_GATEWAY=http://127.0.0.1:8080 MIZAN_REGISTRATION_TOKEN=mzn_reg_… swift run custom-agent
import Foundation
import Logging
import MizanAgent
import MizanCore
import ServiceLifecycle

/// The last user message of a chat request, and the answer the rules give it.
func answer(_ job: AgentJob) throws -> String {
    struct Chat: Decodable { let messages: [Message] }
    struct Message: Decodable {
        let role: String
        let content: String
    }
    guard let chat = try? JSONDecoder().decode(Chat.self, from: job.body), let last = chat.messages.last(where: { $0.role == "user" })
    else { throw JobFailure.final("invalid_request", "The rules read chat requests with text messages only.") }
    if last.content.lowercased().contains("hello") { return "Hello! I am a rule, not a model." }
    return "You said \(last.content.count) characters."
}

/// A chat completion (or one chunk of a stream) of `text`, as OpenAI's API writes it.
func completion(_ text: String, model: String, chunk: Bool = false) -> Data {
    let choice: [String: Any] =
        chunk
        ? ["index": 0, "delta": ["content": text]]
        : ["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": "stop"]
    let object: [String: Any] = [
        "id": "rules-\(UUID().uuidString)", "object": chunk ? "chat.completion.chunk" : "chat.completion",
        "created": Int(Date().timeIntervalSince1970), "model": model, "choices": [choice],
    ]
    return try! JSONSerialization.data(withJSONObject: object)
}

let rules = FunctionHandler(
    models: ["rules"],
    respond: { job in JobResult(body: completion(try answer(job), model: job.model)) },
    stream: { job, events in
        for word in try answer(job).split(separator: " ") {
            try await events.send(String(decoding: completion(word + " ", model: job.model, chunk: true), as: UTF8.self))
        }
        try await events.send("[DONE]")
        return nil  // the agent estimates the tokens
    }
)

let environment = ProcessInfo.processInfo.environment
let logger = Logger(label: "custom-agent")
let agent = Agent(
    configuration: .init(
        gatewayURL: environment["MIZAN_GATEWAY"] ?? "http://127.0.0.1:8080",
        registrationToken: environment["MIZAN_REGISTRATION_TOKEN"],
        tokenFile: environment["MIZAN_TOKEN_FILE"] ?? "custom-agent.token",
        heartbeatInterval: .seconds(2)
    ),
    handler: rules,
    logger: logger
)
try await ServiceGroup(services: [agent], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
