import Foundation
import Logging
import MizanCore
import MizanProvider
import ServiceLifecycle
import Synchronization

/// An agent node: a `Service` that connects out to the gateway, leases dispatch jobs for the
/// models its ``JobHandler`` serves — a local OpenAI-compatible server (Ollama, vLLM, llama.cpp)
/// by default, several by model, or a Swift function — runs them and reports the results.
///
/// ```swift
/// let rules = FunctionHandler(models: ["rules"]) { job in JobResult(body: try answer(job)) }
/// let agent = Agent(configuration: configuration, handler: .byModel(["rules": rules, "llama3": .provider("http://127.0.0.1:11434/v1")]))
/// ```
/// ```
///
/// It heartbeats on its own task whatever its jobs do, leases (long-poll) only while it has free
/// slots and its provider is healthy, runs up to `maxConcurrency` jobs at once, retries reports
/// while the gateway is unreachable, aborts jobs the gateway cancelled, and on graceful shutdown
/// stops leasing and finishes its jobs within a grace period (failing the rest as retryable).
public final class Agent: Service, Sendable {
    /// What the agent connects to and how it runs.
    public struct Configuration: Sendable {
        /// The gateway's base URL.
        public var gatewayURL: String
        /// The one-time registration token (used when the token file holds no node token).
        public var registrationToken: String?
        /// Where the node token is kept (mode 0600).
        public var tokenFile: String
        /// The local provider's base URL, e.g. `http://127.0.0.1:11434/v1`: what the default
        /// handler (a ``ProviderHandler``) forwards to; leave it out with a handler of your own.
        public var providerURL: String
        /// The local provider's API key, if it needs one.
        public var providerAPIKey: String?
        /// The models to serve; `nil` serves what the handler lists (the provider's `GET /models`).
        public var models: [String]?
        /// Models served under a public name the local server knows by another (none): their
        /// public names add to ``models`` (or to what the handler lists), and the default
        /// handler sends their jobs with the local name (see ``ModelAliases``). A handler of
        /// your own gets their jobs under the public name.
        public var modelAliases: ModelAliases
        /// The endpoints the local server serves (all of them by default: chat, completions,
        /// embeddings, Responses and Anthropic Messages); the gateway sends this node only jobs
        /// of these. Name fewer when the local server lacks some (llama.cpp's has no Responses).
        /// For the default handler; a handler of your own says its endpoints in its catalog.
        public var endpoints: [Endpoint]
        /// Jobs run at once (4).
        public var maxConcurrency: Int
        /// Free-form labels reported to the gateway.
        public var labels: [String: String]
        /// Time between heartbeats (5 seconds).
        public var heartbeatInterval: Duration
        /// Time between health checks of the handler (its catalog; 10 seconds).
        public var healthInterval: Duration
        /// How long the handler's checks may fail, while none of its jobs makes progress,
        /// before the node counts as unhealthy (30 seconds): a busy or loading local server is
        /// not taken out of service at its first slow answer. A server that refuses the
        /// connection is unhealthy at once.
        public var unhealthyAfter: Duration
        /// When the default handler asks its local server for a stream for a JSON request
        /// (chat and completions by default: see ``ProviderHandler/UpstreamStream``).
        public var upstreamStream: ProviderHandler.UpstreamStream
        /// How long one lease call may wait for work (25 seconds).
        public var leaseWait: Duration
        /// How long in-flight jobs may run on after shutdown begins (30 seconds).
        public var shutdownGrace: Duration
        /// How calls reach the gateway: the persistent channel (the default; it falls back to
        /// HTTP by itself where the gateway or a proxy has none) or an HTTP exchange per call.
        public var transport: AgentClient.Transport

        /// Creates a configuration; the other fields have the defaults their documentation names.
        public init(
            gatewayURL: String,
            registrationToken: String? = nil,
            tokenFile: String,
            providerURL: String = "",
            providerAPIKey: String? = nil,
            models: [String]? = nil,
            modelAliases: ModelAliases = ModelAliases(),
            endpoints: [Endpoint] = Endpoint.all,
            maxConcurrency: Int = 4,
            labels: [String: String] = [:],
            heartbeatInterval: Duration = .seconds(5),
            healthInterval: Duration = .seconds(10),
            unhealthyAfter: Duration = .seconds(30),
            upstreamStream: ProviderHandler.UpstreamStream = .auto,
            leaseWait: Duration = .seconds(25),
            shutdownGrace: Duration = .seconds(30),
            transport: AgentClient.Transport = .channel
        ) {
            self.gatewayURL = gatewayURL
            self.registrationToken = registrationToken
            self.tokenFile = tokenFile
            self.providerURL = providerURL
            self.providerAPIKey = providerAPIKey
            self.models = models
            self.modelAliases = modelAliases
            self.endpoints = Endpoint.normalized(endpoints)
            self.maxConcurrency = max(1, maxConcurrency)
            self.labels = labels
            self.heartbeatInterval = heartbeatInterval
            self.healthInterval = healthInterval
            self.unhealthyAfter = unhealthyAfter
            self.upstreamStream = upstreamStream
            self.leaseWait = leaseWait
            self.shutdownGrace = shutdownGrace
            self.transport = transport
        }
    }

    /// The configuration.
    public let configuration: Configuration
    /// What serves the jobs.
    public let handler: any JobHandler
    /// The gateway client (its ``AgentClient/usesChannel`` says how calls travel now).
    public let client: AgentClient
    let logger: Logger
    let state: Mutex<State>
    let slots: AsyncStream<Void>
    let slotFreed: AsyncStream<Void>.Continuation

    struct State {
        var token: String?
        var models: [String] = []
        var endpoints: [Endpoint] = []
        /// The models the handler holds loaded, as last found (`nil`: unknown).
        var loadedModels: [String]?
        var health: HandlerHealth
        /// How the handler's health is checked, as last logged.
        var healthCheck: String?
        var revoked = false
        /// Stopping: it leases nothing more and finishes what it runs.
        var draining = false
        var running: [AgentWire.LeaseRef: RunningJob] = [:]
    }

    struct RunningJob {
        var task: Task<Void, Never>?
        var aborted = false
        /// When the job last made progress (its start, or a byte from the local server).
        var progress = ContinuousClock.now
    }

    /// Creates an agent whose jobs go to the local provider of its configuration (a ``ProviderHandler``).
    /// - Parameters:
    ///   - configuration: What to connect to.
    ///   - client: The gateway client (one for `configuration.gatewayURL` by default).
    ///   - provider: The local provider's client.
    ///   - logger: Where the agent logs (never tokens or message contents).
    public convenience init(
        configuration: Configuration, client: AgentClient? = nil, provider: ProviderClient = .shared,
        logger: Logger = Logger(label: "mizan.agent")
    ) {
        let handler = ProviderHandler(
            baseURL: configuration.providerURL, apiKey: configuration.providerAPIKey, models: configuration.models,
            aliases: configuration.modelAliases, endpoints: configuration.endpoints, upstreamStream: configuration.upstreamStream,
            client: provider)
        self.init(configuration: configuration, handler: handler, client: client, logger: logger)
    }

    /// Creates an agent whose jobs go to `handler`.
    /// - Parameters:
    ///   - configuration: What to connect to (its provider fields are not used).
    ///   - handler: What serves the jobs: its catalog says the models and endpoints the node
    ///     reports (``Configuration/models``, when given, names the models instead).
    ///   - client: The gateway client (one for `configuration.gatewayURL` by default).
    ///   - logger: Where the agent logs (never tokens or message contents).
    public init(
        configuration: Configuration, handler: any JobHandler, client: AgentClient? = nil, logger: Logger = Logger(label: "mizan.agent")
    ) {
        self.configuration = configuration
        self.state = Mutex(State(health: HandlerHealth(grace: configuration.unhealthyAfter)))
        self.handler = handler
        self.client = client ?? AgentClient(gatewayURL: configuration.gatewayURL, transport: configuration.transport, logger: logger)
        self.logger = logger
        (slots, slotFreed) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The node's report for heartbeats and registration.
    func report() -> NodeReport {
        state.withLock { state in
            NodeReport(
                models: state.models,
                endpoints: state.endpoints.isEmpty ? configuration.endpoints : state.endpoints,
                maxConcurrency: configuration.maxConcurrency,
                health: state.health.reported,
                inFlight: state.running.count,
                labels: configuration.labels.merging([MizanVersion.labelName: MizanVersion.current]) { mine, _ in mine },
                draining: state.draining,
                loadedModels: state.loadedModels
            )
        }
    }

    /// Runs the agent until graceful shutdown (or until the gateway revokes the node).
    public func run() async throws {
        // Start-up (the handler's first catalog, registration and its retries) ends on the first
        // SIGTERM/SIGINT too; an agent that never connected has nothing to drain.
        let token: String
        do {
            token = try await cancelWhenGracefulShutdown {
                try await self.waitForHandler()
                return try await self.obtainToken()
            }
        } catch  where Task.isShuttingDownGracefully {
            logger.info("agent stopped before it connected")
            return
        }
        state.withLock { $0.token = token }
        // The gateway pushes the end of a job whose client left: its local call stops at once.
        client.onAbort { [weak self] lease in self?.abort(lease) }
        logger.info(
            "agent connected",
            metadata: ["mizan.gateway": "\(configuration.gatewayURL)", "mizan.models": "\(report().models.joined(separator: ","))"])
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await self.heartbeatLoop(token: token) }
            group.addTask { await self.healthLoop() }
            group.addTask { await self.loadedModelsLoop() }
            // Shutdown wakes a lease loop that waits for a free slot, so the grace period starts.
            try await withGracefulShutdownHandler {
                try await self.leaseLoop(token: token)
            } onGracefulShutdown: {
                self.slotFreed.yield()
            }
            if !self.state.withLock({ $0.revoked }) {
                // Stopping: the gateway stops counting on this node at once (requests for its
                // models go elsewhere or are answered 503) while its jobs finish.
                self.state.withLock { $0.draining = true }
                await self.announceDraining(token: token)
            }
            await self.drain()
            group.cancelAll()
        }
        if !state.withLock({ $0.revoked }) {
            // It holds nothing any more: disconnected at once, anything left requeued.
            do {
                try await client.goodbye(token: token)
            } catch {
                logger.info("goodbye not delivered; the gateway will notice the node is gone", metadata: ["mizan.error": "\(error)"])
            }
        }
        // The gateway ends what it still waits on for this node (its lease calls).
        client.close()
        if state.withLock({ $0.revoked }) {
            throw AgentClientError(
                .status(401),
                message: "The gateway refused this node's token: the node was revoked, or the gateway no longer knows it. "
                    + "Create a new node (mizan nodes create) and start the agent with its registration token."
            )
        }
        logger.info("agent stopped")
    }
}
