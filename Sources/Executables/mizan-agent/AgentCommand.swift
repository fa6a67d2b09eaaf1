import ArgumentParser
import Foundation
import Logging
import MizanAgent
import MizanCore
import MizanLogging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// `mizan-agent`: serves the models of a local OpenAI-compatible server to a Mizan gateway.
@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizan-agent",
        abstract: "Serve a local OpenAI-compatible server (Ollama, vLLM, llama.cpp) to a Mizan gateway.",
        discussion: """
            The agent connects out to the gateway (it works behind NAT), registers once with a registration \
            token from `mizan nodes create` and keeps its node token in --token-file; later starts need only \
            the token file. It leases jobs for its models, runs them against --provider and reports the results. \
            SIGTERM stops leasing and lets running jobs finish (--shutdown-grace seconds).

            Model aliases: --model PUBLIC=LOCAL (repeatable) serves the local server's model LOCAL under the name \
            PUBLIC, the name clients ask for. The node advertises PUBLIC besides its other models (--models, or what \
            the provider's /v1/models lists) and sends each job for it with the body's "model" set to LOCAL (the \
            top-level "model" of a JSON body; the "model" field of a /v1/audio/transcriptions form). Answers go back \
            as the local server wrote them. Example: --model chat=chat-8b-instruct-q4.

            Loaded models: at most once per --health-interval the agent asks its local server which models it \
            holds loaded (GET /api/ps where GET /api/version answers, else GET /v1/models) and reports them, by the names it serves \
            them under, with its heartbeats. A server that does not answer within 2 seconds, or is generating for \
            one of the node's jobs, is not counted against the node.
            """,
        version: MizanVersion.current
    )

    @Option(help: "The gateway's base URL, e.g. http://gateway:8080.")
    var gateway: String

    @Option(name: .customLong("registration-token"), help: "The one-time registration token (env MIZAN_REGISTRATION_TOKEN).")
    var registrationToken: String?

    @Option(
        name: .customLong("token-file"),
        help: ArgumentHelp(
            "Where the node token is kept (written with mode 0600 after registering); keep it outside any repository, e.g. "
                + "~/.config/mizan/node.token."
        )
    )
    var tokenFile = "mizan-agent.token"

    @Option(help: "The local OpenAI-compatible server's base URL, e.g. http://127.0.0.1:11434/v1.")
    var provider: String

    @Option(name: .customLong("provider-api-key-env"), help: "An environment variable holding the local server's API key, if it needs one.")
    var providerAPIKeyEnv: String?

    @Option(help: "Comma-separated models to serve (default: what the provider's /v1/models lists).")
    var models: String?

    @Option(
        name: .customLong("model"),
        help: ArgumentHelp(
            "A model alias, PUBLIC=LOCAL (repeatable): serve the local server's model LOCAL under the name PUBLIC; jobs for "
                + "PUBLIC reach the local server with \"model\" set to LOCAL. Adds PUBLIC to --models (or to the provider's list).",
            valueName: "PUBLIC=LOCAL"))
    var modelAliases: [String] = []

    @Option(
        help: """
            Comma-separated endpoints the local server serves (default: all — \(Endpoint.allCases.map(\.rawValue).joined(separator: ", "))). \
            The gateway sends this node only jobs of these; name fewer when the local server lacks some.
            """)
    var endpoints: String?

    @Option(name: .customLong("max-concurrency"), parsing: .unconditional, help: "Jobs run at once.")
    var maxConcurrency = 4

    @Option(help: "A name for logs (the node's name is set when it is created).")
    var name: String?

    @Option(name: .customLong("heartbeat-interval"), parsing: .unconditional, help: "Seconds between heartbeats.")
    var heartbeatInterval: Double = 5

    @Option(
        name: .customLong("health-interval"), parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds between checks of the local server: its health endpoint, found at start (GET /health for llama.cpp and "
                + "vLLM, GET /api/version for Ollama, else GET /v1/models). A check that fails while a job streams means busy."))
    var healthInterval: Double = 10

    @Option(
        name: .customLong("unhealthy-after"), parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds the local server's checks may fail, while none of its jobs makes progress, before the node counts as "
                + "unhealthy (meanwhile it takes no new job). A server that refuses connections is unhealthy at once."))
    var unhealthyAfter: Double = 30

    @Option(
        name: .customLong("upstream-stream"),
        help: ArgumentHelp(
            "When a client's JSON request is asked of the local server as a stream and folded back into JSON: auto (chat "
                + "and completions), always (Responses and Messages too) or never. A server stops a stream's generation when "
                + "the agent closes it, which it cannot do for a JSON request whose client left."))
    var upstreamStream = "auto"

    @Option(name: .customLong("shutdown-grace"), parsing: .unconditional, help: "Seconds running jobs may finish after SIGTERM.")
    var shutdownGrace: Double = 30

    @Option(
        help: ArgumentHelp(
            "How the agent talks to the gateway: channel (one persistent connection carries leases, results, streams and "
                + "heartbeats; falls back to http by itself where the gateway or a proxy has none) or http (an HTTP call each)."))
    var transport = "channel"

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard let url = URL(string: gateway), ["http", "https"].contains(url.scheme ?? "") else {
            throw ValidationError("--gateway must be an http(s) URL.")
        }
        guard let url = URL(string: provider), ["http", "https"].contains(url.scheme ?? "") else {
            throw ValidationError("--provider must be an http(s) URL.")
        }
        guard maxConcurrency >= 1, maxConcurrency <= 10_000 else { throw ValidationError("--max-concurrency must be 1-10000.") }
        guard heartbeatInterval > 0, healthInterval > 0, shutdownGrace >= 0, unhealthyAfter >= 0 else {
            throw ValidationError(
                "--heartbeat-interval and --health-interval must be positive, --shutdown-grace and --unhealthy-after not negative.")
        }
        guard ProviderHandler.UpstreamStream(rawValue: upstreamStream) != nil else {
            throw ValidationError("--upstream-stream must be auto, always or never.")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("Unknown --log-level '\(logLevel)'.") }
        guard AgentClient.Transport(rawValue: transport) != nil else { throw ValidationError("--transport must be channel or http.") }
        do {
            _ = try ModelAliases(parsing: modelAliases)
        } catch let error as ModelAliasError {
            throw ValidationError("--model: \(error)")
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        // Run Swift concurrency on NIO's event loops, so that a request's work does not hop
        // between them and a second thread pool (MIZAN_NIO_EXECUTOR=0 keeps Swift's own pool).
        if environment["MIZAN_NIO_EXECUTOR"] != "0" {
            _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        MizanLogging.bootstrap(level: level)
        var logger = Logger(label: "mizan.agent")
        if let name { logger[metadataKey: "mizan.agent.name"] = "\(name)" }
        let modelList = models.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        var endpointList = Endpoint.all
        if let endpoints {
            endpointList = []
            for name in endpoints.split(separator: ",") where !name.trimmingCharacters(in: .whitespaces).isEmpty {
                guard let endpoint = Endpoint(configured: String(name)) else {
                    throw ValidationError(
                        "Unknown endpoint '\(name)' in --endpoints (known: \(Endpoint.allCases.map(\.rawValue).joined(separator: ", "))).")
                }
                endpointList.append(endpoint)
            }
            guard !endpointList.isEmpty else { throw ValidationError("--endpoints names no endpoint.") }
        }
        let agent = Agent(
            configuration: .init(
                gatewayURL: gateway,
                registrationToken: registrationToken ?? environment["MIZAN_REGISTRATION_TOKEN"],
                tokenFile: tokenFile,
                providerURL: provider,
                providerAPIKey: providerAPIKeyEnv.flatMap { environment[$0] },
                models: modelList,
                modelAliases: try ModelAliases(parsing: modelAliases),
                endpoints: endpointList,
                maxConcurrency: maxConcurrency,
                heartbeatInterval: .seconds(heartbeatInterval),
                healthInterval: .seconds(healthInterval),
                unhealthyAfter: .seconds(unhealthyAfter),
                upstreamStream: ProviderHandler.UpstreamStream(rawValue: upstreamStream) ?? .auto,
                shutdownGrace: .seconds(shutdownGrace),
                transport: AgentClient.Transport(rawValue: transport) ?? .channel
            ),
            logger: logger
        )
        let group = ServiceGroup(
            configuration: .init(services: [.init(service: agent)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch let error as AgentClientError {
            logger.error("\(error.message)")
            throw ExitCode.failure
        }
    }
}
