import Foundation
import Hummingbird
import Logging
import MizanAgent
import MizanCore
import MizanGateway
import MizanMockProvider
import MizanStore
import MizanTestSupport
import NIOCore
import ServiceLifecycle
import Synchronization

/// A gateway (in memory) and a mock local provider on loopback ports, for agents run in this
/// process against them.
struct AgentStack: Sendable {
    let gateway: Gateway
    let gatewayURL: String
    let providerURL: String
    let apiKey: String

    /// A new node's one-time registration token.
    func registrationToken(name: String = "node") async throws -> String {
        try await gateway.dispatcher.createNode(name: name).registrationToken
    }

    /// An agent configuration for this stack, fast to heartbeat and lease.
    func configuration(
        tokenFile: String,
        registrationToken: String?,
        maxConcurrency: Int = 2,
        shutdownGrace: Duration = .seconds(5),
        transport: AgentClient.Transport = .channel
    ) -> Agent.Configuration {
        Agent.Configuration(
            gatewayURL: gatewayURL,
            registrationToken: registrationToken,
            tokenFile: tokenFile,
            providerURL: providerURL,
            maxConcurrency: maxConcurrency,
            heartbeatInterval: .milliseconds(200),
            healthInterval: .seconds(1),
            leaseWait: .seconds(2),
            shutdownGrace: shutdownGrace,
            transport: transport
        )
    }

    /// A chat completion as a client sends it.
    func chat(model: String = "mock-model", stream: Bool = false, deadlineMilliseconds: Int? = nil, timeout: TimeAmount = .seconds(30))
        async throws -> HTTPAnswer
    {
        let body = #"{"model":"\#(model)","messages":[{"role":"user","content":"hi"}],"stream":\#(stream)}"#
        let headers = deadlineMilliseconds.map { [("X-Mizan-Deadline-Ms", String($0))] } ?? []
        return try await sendHTTP(.POST, gatewayURL + "/v1/chat/completions", token: apiKey, body: body, headers: headers, timeout: timeout)
    }

    /// The mock provider's counters.
    func providerStats() async throws -> [String: Int] {
        let answer = try await sendHTTP(.GET, providerURL.replacingOccurrences(of: "/v1", with: "") + "/mock/stats", timeout: .seconds(5))
        return (try JSONSerialization.jsonObject(with: answer.body) as? [String: Int]) ?? [:]
    }

    /// Whether a healthy node serves `model` (the agent registered and heartbeats).
    func serves(_ model: String = "mock-model") async throws -> Bool {
        try await gateway.dispatcher.healthyNodes().contains { $0.models.contains(model) }
    }
}

/// Runs a mock provider and a gateway (with its sweeper) for the duration of `body`.
func withStack<T: Sendable>(
    _ mock: MockProvider.Configuration = .init(),
    gatewayPort: Int = 0,
    gatewayConfiguration: Gateway.Configuration = .init(),
    store: InMemoryStore = InMemoryStore(),
    _ body: (AgentStack) async throws -> T
) async throws -> T {
    try await withServer({ MockProvider.application(mock, onServerRunning: $0) }) { providerPort in
        let gateway = Gateway(
            store: store, adminToken: "admin-token-for-agent-tests", configuration: gatewayConfiguration, environment: [:])
        let key = try await gateway.credentials.issueKey(name: "agent-tests")
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await gateway.sweeper.run() }
            defer { group.cancelAll() }
            return try await withServer({ gateway.application(port: gatewayPort, onServerRunning: $0) }) { port in
                try await body(
                    AgentStack(
                        gateway: gateway,
                        gatewayURL: "http://127.0.0.1:\(port)",
                        providerURL: "http://127.0.0.1:\(providerPort)/v1",
                        apiKey: key.secret
                    )
                )
            }
        }
    }
}

/// An agent running in this process as a service; ``stop()`` shuts it down gracefully.
struct RunningAgent: Sendable {
    let agent: Agent
    let group: ServiceGroup
    let task: Task<Void, any Error>
    let ended: Flag

    /// Starts an agent in a service group of its own.
    static func start(
        _ configuration: Agent.Configuration, handler: (any JobHandler)? = nil, logger: Logger = Logger(label: "mizan.agent")
    ) -> RunningAgent {
        let agent =
            handler.map { Agent(configuration: configuration, handler: $0, logger: logger) }
            ?? Agent(configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: agent)], logger: logger))
        let ended = Flag()
        let task = Task {
            defer { ended.value.store(true, ordering: .releasing) }
            try await group.run()
        }
        return RunningAgent(agent: agent, group: group, task: task, ended: ended)
    }

    /// Whether the agent's run has ended (by itself, or after ``stop(within:)``).
    var hasEnded: Bool { ended.value.load(ordering: .acquiring) }

    /// Begins a graceful shutdown and waits (bounded) for the agent to stop.
    /// - Returns: How the agent's run ended.
    @discardableResult
    func stop(within limit: Duration = .seconds(20)) async throws -> Result<Void, any Error> {
        await group.triggerGracefulShutdown()
        return try await withTimeLimit(limit, timeoutError: { WaitTimedOut(what: "the agent to stop", timeout: limit) }) {
            await task.result
        }
    }
}

/// A fresh token file path in a new temporary folder.
func temporaryTokenFile() throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-agent-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder.appendingPathComponent("node.token").path
}

/// A flag one task sets and others read.
final class Flag: Sendable {
    let value = Atomic<Bool>(false)
}
