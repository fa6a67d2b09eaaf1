import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import MizanProvider
import MizanStore
import Prometheus
import ServiceLifecycle
import Synchronization

/// Mizan's OpenAI-compatible gateway, built from one store and one ``Configuration``: the
/// dispatch engine and its sweeper, and a Hummingbird router whose controllers serve the
/// client API (`/v1/…`), the agent API (`/agent/v1/…`), the admin API (`/admin/v1/…`), the
/// operations endpoints and the modules added to it (`MizanConsole`'s operator's console).
///
/// Provider routes are tried first in priority order (with fallback before any byte reached the
/// client, and a cool-down for failing routes); then agent nodes through the `Dispatcher`.
///
/// ```swift
/// let gateway = Gateway(store: InMemoryStore(), adminToken: token)
/// let services = gateway.services(port: 8080)   // the sweeper and the HTTP server
/// try await ServiceGroup(services: services, logger: logger).run()
/// ```
public final class Gateway: Sendable {
    /// The header a client may send to set its request's deadline, in milliseconds.
    public static let deadlineHeader = HTTPField.Name.mizanDeadline
    /// The header with which a client makes a request safe to retry: a retry with the same key
    /// (and body) attaches to the first request's job instead of running it again.
    public static let idempotencyKeyHeader = HTTPField.Name.idempotencyKey
    /// The request id header, echoed or created.
    public static let requestIDHeader = HTTPField.Name.requestID
    /// The header on every answer with the gateway's own time until the answer's head, in
    /// milliseconds: the whole time less the waits on a provider route or a node.
    public static let overheadHeader = HTTPField.Name.mizanOverhead

    /// The dispatch engine (agent-served models, node registry), built from ``Configuration/dispatch``.
    public let dispatcher: Dispatcher
    /// The housekeeping of the engine's store (deadlines, lost nodes, retention).
    public let sweeper: Sweeper<ContinuousClock>
    /// The provider routes.
    public let routes: RouteTable
    /// Bearer secret checks and API keys.
    public let credentials: Credentials
    /// Every setting.
    public let configuration: Configuration
    /// Where `/metrics` reads from, when metrics are bootstrapped with Prometheus.
    public let metricsRegistry: PrometheusCollectorRegistry?
    let access: any AccessStore
    let storeServices: [any Service]
    let logger: Logger
    let connections: ConnectionLimit
    let client: ClientController
    let agents: AgentController
    let admin: AdminController
    let operations: OperationsController
    /// The modules added to the gateway (the operator's console).
    let additions: [any GatewayRoutes]
    let recorder: RequestRecorder
    /// Runs batches and background responses.
    let batchRunner: BatchRunner
    let files: FilesController
    let batches: BatchesController
    /// Usage writes that failed, written again until the store takes them.
    let usageSpool: UsageSpool

    /// Creates a gateway and the engine behind it.
    /// - Parameters:
    ///   - store: Where jobs, nodes, API keys and usage live (`InMemoryStore`, `PostgresStore`).
    ///   - storeServices: Services the store needs running (for PostgreSQL: its client and the
    ///     store's event listener); ``services(host:port:beforeServerStarts:onServerRunning:)`` runs them first.
    ///   - routes: The provider routes.
    ///   - adminToken: The operator's token; without one the admin API refuses every call.
    ///   - configuration: Every setting.
    ///   - provider: The upstream HTTP client.
    ///   - environment: Where routes' `apiKeyEnv` names are looked up.
    ///   - metricsRegistry: The registry `/metrics` serves (bootstrap swift-metrics with it).
    ///   - additions: Modules that add routes (`MizanConsole`'s `.console()`).
    ///   - logger: Where request lines go; the engine logs as `mizan.dispatch`.
    public init(
        store: some DispatchStore & AccessStore & BatchStore,
        storeServices: [any Service] = [],
        routes: RouteTable = RouteTable(routes: []),
        adminToken: String?,
        configuration: Configuration = .init(),
        provider: ProviderClient = .shared,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        metricsRegistry: PrometheusCollectorRegistry? = nil,
        additions: [GatewayAddition] = [],
        logger: Logger = Logger(label: "mizan.gateway")
    ) {
        let dispatcher = Dispatcher(store: store, configuration: configuration.dispatch, logger: Logger(label: "mizan.dispatch"))
        let credentials = Credentials(store: store, adminToken: adminToken, keyCacheLifetime: configuration.dispatch.cacheLifetime)
        let metrics = GatewayMetrics()
        let spool = UsageSpool(access: store, capacity: configuration.usageSpoolCapacity, logger: logger)
        self.usageSpool = spool
        let admissions = Admissions(access: store, spool: spool, metrics: metrics, logger: logger)
        self.dispatcher = dispatcher
        self.sweeper = Sweeper(dispatcher: dispatcher)
        self.routes = routes
        self.credentials = credentials
        self.configuration = configuration
        self.metricsRegistry = metricsRegistry
        self.access = store
        self.storeServices = storeServices
        self.logger = logger
        self.connections = ConnectionLimit(maximum: max(1, configuration.maxConnections))
        self.client = ClientController(
            credentials: credentials,
            dispatcher: dispatcher,
            routes: RouteServer(
                routes: routes, provider: provider, environment: environment, firstByteTimeout: configuration.firstByteTimeout,
                metrics: metrics, logger: logger),
            nodes: NodeServer(dispatcher: dispatcher, maxQueueWait: configuration.maxQueueWait, logger: logger),
            admissions: admissions,
            limits: .init(
                maxBodyBytes: configuration.maxBodyBytes, bodyTimeout: configuration.bodyTimeout,
                defaultDeadline: configuration.dispatch.defaultDeadline, maxDeadline: configuration.maxDeadline,
                tokenReservation: configuration.tokenReservation),
            placement: configuration.placement
        )
        self.agents = AgentController(
            dispatcher: dispatcher,
            channels: NodeChannels(dispatcher: dispatcher, grace: configuration.nodeDisconnectGrace, logger: logger),
            maxBodyBytes: configuration.maxBodyBytes, channelEnabled: configuration.agentChannel,
            maxChannels: max(1, configuration.maxConnections / 2))
        self.admin = AdminController(dispatcher: dispatcher, credentials: credentials, access: store)
        self.operations = OperationsController(dispatcher: dispatcher, spool: spool, metricsRegistry: metricsRegistry, logger: logger)
        let activity = RecentActivity()
        self.recorder = RequestRecorder(admissions: admissions, metrics: metrics, activity: activity, logger: logger)
        let lineServer = LineServer(client: client, recorder: recorder)
        let poke = Mutex<(@Sendable () -> Void)?>(nil)
        let background = BackgroundResponses(
            client: client, recorder: recorder, store: store, streamWait: configuration.maxDeadline,
            poke: { poke.withLock { $0 }?() })
        let batchRunner = BatchRunner(
            store: store, lines: lineServer, responses: background, settings: configuration.batches, logger: logger)
        poke.withLock { $0 = { [weak batchRunner] in batchRunner?.poke() } }
        self.batchRunner = batchRunner
        self.files = FilesController(client: client, store: store, maxFileBytes: configuration.batches.maxFileBytes)
        self.batches = BatchesController(client: client, store: store, runner: batchRunner, settings: configuration.batches)
        let parts = GatewayParts(
            dispatcher: dispatcher, credentials: credentials, access: store, routes: routes, activity: activity, logger: logger,
            batches: store,
            cancelBatch: { [store, batchRunner] id in
                try await BatchesController.cancel(id, apiKeyID: nil, store: store, runner: batchRunner)
            })
        self.additions = additions.compactMap { $0.make(parts) }
    }

    /// The gateway's router: every controller's routes, behind the request middleware
    /// (request id, OpenAI-shaped errors, one log line, metrics, usage records).
    public func router() -> Router<GatewayRequestContext> {
        let router = Router(context: GatewayRequestContext.self)
        router.add(middleware: RequestMiddleware(recorder: recorder))
        client.addRoutes(to: router.group())
        batchRunner.responses.addRoutes(to: router.group())
        files.addRoutes(to: router.group())
        batches.addRoutes(to: router.group())
        batches.addAdminRoutes(to: router.group("/admin/v1"))
        agents.addRoutes(to: router.group("/agent/v1"))
        admin.addRoutes(to: router.group("/admin/v1"))
        operations.addRoutes(to: router.group())
        for addition in additions { addition.addRoutes(to: router) }
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
            server: .http1(
                configuration: .init(
                    additionalChannelHandlers: [connections.handler(), ConnectionWatcher()],
                    idleTimeout: .nanoseconds(configuration.idleTimeout.nanosecondsClamped)
                )
            ),
            configuration: .init(address: .hostname(host, port: port), serverName: "mizan-gateway"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? port) },
            logger: logger
        )
        if let beforeServerStarts { app.beforeServerStarts(perform: beforeServerStarts) }
        return app
    }

    /// Everything a running gateway needs, in start order: the store's services, the usage
    /// spool (it stops after the server, writing what waits), the sweeper and the HTTP server (see ``application(host:port:beforeServerStarts:onServerRunning:)``).
    /// Run them in one `ServiceGroup`.
    public func services(
        host: String = "127.0.0.1",
        port: Int = 8080,
        beforeServerStarts: (@Sendable () async throws -> Void)? = nil,
        onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> [any Service] {
        storeServices + [
            usageSpool, sweeper, batchRunner,
            application(host: host, port: port, beforeServerStarts: beforeServerStarts, onServerRunning: onServerRunning),
        ]
    }
}
