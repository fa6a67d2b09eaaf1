import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import MizanProvider
import MizanStore
import Prometheus

/// Mizan's OpenAI-compatible gateway: the client API (`/v1/…`), the agent API (`/agent/v1/…`),
/// the admin API (`/admin/v1/…`) and the operations endpoints, as a Hummingbird router.
///
/// Provider routes are tried first in priority order (with fallback before any byte reached the
/// client, and a cool-down for failing routes); then agent nodes through the ``Dispatcher``.
public final class Gateway: Sendable {
    /// Limits and defaults of the gateway.
    public struct Configuration: Sendable {
        /// The largest request body accepted (8 MiB); larger bodies get 413.
        public var maxBodyBytes: Int
        /// A request's deadline when it names none (5 minutes).
        public var defaultDeadline: Duration
        /// The longest deadline a request may ask for with the deadline header (1 hour).
        public var maxDeadline: Duration
        /// How long a request for an agent-served model may wait in the queue for a free node
        /// before it is answered 429 (2 minutes); the deadline still bounds the whole request.
        public var maxQueueWait: Duration
        /// The longest a provider route may take to send its response head (60 seconds).
        public var firstByteTimeout: Duration
        /// A node silent for this long does not count as healthy capacity (30 seconds).
        public var nodeStaleAfter: Duration
        /// How long the gateway trusts what it read from the store about an API key before
        /// reading it again (1 second). A key revoked through another instance stops working
        /// within it; `.zero` reads the store on every request. (The node list's lifetime is the
        /// dispatcher's ``Dispatcher/Configuration/cacheLifetime``.)
        public var cacheLifetime: Duration
        /// A connection that sends nothing for this long while idle between requests, or while
        /// its request's head or body is being read, is closed (60 seconds). This bounds slow
        /// and half-sent headers too: a head counts as read only once it is complete.
        public var idleTimeout: Duration
        /// The longest a request's whole body may take to arrive, however steadily it trickles
        /// in (60 seconds); past it the request gets 408.
        public var bodyTimeout: Duration
        /// The most client connections open at once (4,096); past it a new connection is closed
        /// as soon as it is accepted.
        public var maxConnections: Int

        /// Creates a configuration; every field has the default its documentation names.
        public init(
            maxBodyBytes: Int = 8 << 20,
            defaultDeadline: Duration = .seconds(300),
            maxDeadline: Duration = .seconds(3600),
            maxQueueWait: Duration = .seconds(120),
            firstByteTimeout: Duration = .seconds(60),
            nodeStaleAfter: Duration = .seconds(30),
            cacheLifetime: Duration = .seconds(1),
            idleTimeout: Duration = .seconds(60),
            bodyTimeout: Duration = .seconds(60),
            maxConnections: Int = 4096
        ) {
            self.idleTimeout = idleTimeout
            self.bodyTimeout = bodyTimeout
            self.maxConnections = maxConnections
            self.cacheLifetime = cacheLifetime
            self.maxBodyBytes = maxBodyBytes
            self.defaultDeadline = defaultDeadline
            self.maxDeadline = maxDeadline
            self.maxQueueWait = maxQueueWait
            self.firstByteTimeout = firstByteTimeout
            self.nodeStaleAfter = nodeStaleAfter
        }
    }

    /// The header a client may send to set its request's deadline, in milliseconds.
    public static let deadlineHeader = HTTPField.Name("X-Mizan-Deadline-Ms")!
    /// The request id header, echoed or created.
    public static let requestIDHeader = HTTPField.Name("X-Request-Id")!

    /// The dispatch engine (agent-served models, node registry).
    public let dispatcher: Dispatcher
    /// Where API keys and usage records live.
    public let access: any AccessStore
    /// The provider routes.
    public let routes: RouteTable
    /// Bearer secret checks.
    public let credentials: Credentials
    /// The upstream client.
    public let provider: ProviderClient
    /// Limits and defaults.
    public let configuration: Configuration
    /// Where `/metrics` reads from, when metrics are bootstrapped with Prometheus.
    public let metricsRegistry: PrometheusCollectorRegistry?
    let logger: Logger
    let metrics = GatewayMetrics()
    let streams = StreamHub()
    let connections: ConnectionLimit
    let upstreamKeys: [String: String]

    /// Creates a gateway.
    /// - Parameters:
    ///   - dispatcher: The dispatch engine.
    ///   - access: Where API keys and usage records live (usually the dispatcher's store).
    ///   - routes: The provider routes.
    ///   - adminToken: The operator's token; without one the admin API refuses every call.
    ///   - provider: The upstream HTTP client.
    ///   - configuration: Limits and defaults.
    ///   - environment: Where routes' `apiKeyEnv` names are looked up.
    ///   - metricsRegistry: The registry `/metrics` serves (the executable bootstraps swift-metrics with it).
    ///   - logger: Where request lines go.
    public init(
        dispatcher: Dispatcher,
        access: any AccessStore,
        routes: RouteTable,
        adminToken: String?,
        provider: ProviderClient = .shared,
        configuration: Configuration = .init(),
        environment: [String: String] = ProcessInfo.processInfo.environment,
        metricsRegistry: PrometheusCollectorRegistry? = nil,
        logger: Logger = Logger(label: "mizan.gateway")
    ) {
        self.dispatcher = dispatcher
        self.access = access
        self.routes = routes
        self.credentials = Credentials(store: access, adminToken: adminToken, keyCacheLifetime: configuration.cacheLifetime)
        self.provider = provider
        self.configuration = configuration
        self.metricsRegistry = metricsRegistry
        self.logger = logger
        self.connections = ConnectionLimit(maximum: max(1, configuration.maxConnections))
        var keys: [String: String] = [:]
        for route in routes.routesByModel.values.joined() {
            if let name = route.apiKeyEnv, let key = environment[name], !key.isEmpty { keys[route.name] = key }
        }
        self.upstreamKeys = keys
        // Streams whose node talks to another gateway instance arrive as store events.
        dispatcher.store.addEventHandler { [streams] event in
            guard case .streamed(let id, let data, let end) = event else { return }
            for item in data { streams.publish(id, .data(item)) }
            if end { streams.publish(id, .end) }
        }
    }

    /// The gateway's router: every endpoint, behind the request middleware (request id,
    /// OpenAI-shaped errors, one log line, metrics, usage records).
    public func router() -> Router<GatewayRequestContext> {
        let router = Router(context: GatewayRequestContext.self)
        router.add(middleware: RequestMiddleware(gateway: self))
        addClientRoutes(to: router)
        addAgentRoutes(to: router)
        addAdminRoutes(to: router)
        addOperationsRoutes(to: router)
        return router
    }

    /// A Hummingbird application serving the gateway.
    /// - Parameters:
    ///   - host: The address to bind (127.0.0.1 unless told otherwise).
    ///   - port: The port (0 picks a free one).
    ///   - beforeServerStarts: Work that must finish before the port opens (e.g. store migrations).
    ///   - onServerRunning: Called with the bound port once the server listens.
    /// - Returns: The application, a `Service` to run in a `ServiceGroup`.
    public func application(
        host: String = "127.0.0.1",
        port: Int = 8080,
        beforeServerStarts: (@Sendable () async throws -> Void)? = nil,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let connections = connections
        var app = Application(
            router: router(),
            server: .http1(configuration: .init(
                additionalChannelHandlers: [connections.handler(), ConnectionWatcher()],
                idleTimeout: .nanoseconds(configuration.idleTimeout.nanosecondsClamped)
            )),
            configuration: .init(address: .hostname(host, port: port), serverName: "mizan-gateway"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
        if let beforeServerStarts { app.beforeServerStarts(perform: beforeServerStarts) }
        return app
    }
}
