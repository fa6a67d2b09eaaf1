import ArgumentParser
import Foundation
import Hummingbird
import Logging
import MizanLogging
import Metrics
import MizanDispatch
import MizanGateway
import MizanStore
import MizanStorePostgres
import NIOCore
import NIOPosix
import PostgresNIO
import Prometheus
import ServiceLifecycle

/// `mizan-gateway`: the OpenAI-compatible gateway in front of provider routes and agent nodes.
@main
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizan-gateway",
        abstract: "Run Mizan's OpenAI-compatible gateway (client, agent and admin APIs).",
        discussion: """
            Clients call /v1/chat/completions and /v1/models with an API key (create one with `mizan keys create`). \
            Requests go to the provider routes of --routes first (lower priority number first, falling back on \
            failures), then to agent nodes that serve the model. With no --database-url the gateway keeps its \
            state in memory (lost on restart); a postgres:// URL stores it in PostgreSQL, which several \
            gateways can share.
            """
    )

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "The port to listen on (0 picks a free one; the address is logged at start).")
    var port = 8080

    @Option(name: .customLong("database-url"), help: "A postgres:// URL for the shared store (env MIZAN_DATABASE_URL). Default: in memory.")
    var databaseURL: String?

    @Option(help: "A routes file, JSON or YAML (.yaml/.yml) (env MIZAN_ROUTES).")
    var routes: String?

    @Option(name: .customLong("admin-token"), help: "The admin API's bearer token (env MIZAN_ADMIN_TOKEN). Without one the admin API is off.")
    var adminToken: String?

    @Option(name: .customLong("default-deadline"), help: "Seconds a request may take when it names no deadline (header X-Mizan-Deadline-Ms).")
    var defaultDeadline: Double = 300

    @Option(name: .customLong("max-queue-wait"), help: "Seconds a request for an agent-served model may wait for a free node before it gets 429.")
    var maxQueueWait: Double = 120

    @Option(name: .customLong("max-body-bytes"), help: "The largest request body accepted (larger gets 413).")
    var maxBodyBytes = 8 << 20

    @Option(name: .customLong("route-cooldown"), help: "Seconds a provider route that keeps failing is skipped.")
    var routeCooldown: Double = 30

    @Option(name: .customLong("node-stale-after"), help: "Seconds without a heartbeat after which a node counts as gone (its jobs are requeued).")
    var nodeStaleAfter: Double = 30

    @Option(
        name: .customLong("cache-lifetime"),
        help: "Seconds the gateway trusts what it read about an API key, a node token or the node list before reading the store again; a key or node revoked through another instance is refused within it (0 reads every time)."
    )
    var cacheLifetime: Double = 1

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535.") }
        guard defaultDeadline > 0, maxQueueWait > 0, routeCooldown >= 0 else {
            throw ValidationError("--default-deadline and --max-queue-wait must be positive, --route-cooldown not negative.")
        }
        guard nodeStaleAfter > 0 else { throw ValidationError("--node-stale-after must be positive.") }
        guard cacheLifetime >= 0, cacheLifetime <= 60 else { throw ValidationError("--cache-lifetime must be 0-60 seconds.") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024.") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("Unknown --log-level '\(logLevel)'.") }
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
        let logger = Logger(label: "mizan.gateway")
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let routesPath = routes ?? environment["MIZAN_ROUTES"].flatMap { $0.isEmpty ? nil : $0 }
        let routeList = try routesPath.map { try RoutesFile.load(path: $0).routes } ?? []
        let table = RouteTable(routes: routeList, cooldown: .milliseconds(Int64(routeCooldown * 1000)))
        for route in routeList where route.apiKeyEnv.map({ environment[$0]?.isEmpty ?? true }) ?? false {
            logger.warning("route has no upstream key: its apiKeyEnv is not set", metadata: ["mizan.route": "\(route.name)", "mizan.env": "\(route.apiKeyEnv ?? "")"])
        }
        let token = adminToken ?? environment["MIZAN_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if token == nil { logger.notice("no admin token: the admin API is off (set --admin-token or MIZAN_ADMIN_TOKEN)") }
        let configuration = Gateway.Configuration(
            maxBodyBytes: maxBodyBytes,
            defaultDeadline: .milliseconds(Int64(defaultDeadline * 1000)),
            maxQueueWait: .milliseconds(Int64(maxQueueWait * 1000)),
            nodeStaleAfter: .milliseconds(Int64(nodeStaleAfter * 1000)),
            cacheLifetime: .milliseconds(Int64(cacheLifetime * 1000))
        )
        let engine = Dispatcher.Configuration(cacheLifetime: configuration.cacheLifetime)

        var services: [any Service] = []
        let dispatcher: Dispatcher
        let access: any AccessStore
        var prepare: (@Sendable () async throws -> Void)?
        let url = databaseURL ?? environment["MIZAN_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
        let storeName: String
        if let url {
            let client = PostgresClient(configuration: try PostgresClient.Configuration(url: url), backgroundLogger: logger)
            let store = PostgresStore(client: client, logger: Logger(label: "mizan.store.postgres"))
            services += [client, store]
            dispatcher = Dispatcher(store: store, configuration: engine, logger: Logger(label: "mizan.dispatch"))
            access = store
            prepare = { try await store.migrate() }
            storeName = "postgresql"
        } else {
            let store = InMemoryStore()
            dispatcher = Dispatcher(store: store, configuration: engine, logger: Logger(label: "mizan.dispatch"))
            access = store
            storeName = "memory"
        }
        let gateway = Gateway(
            dispatcher: dispatcher,
            access: access,
            routes: table,
            adminToken: token,
            configuration: configuration,
            environment: environment,
            metricsRegistry: registry,
            logger: logger
        )
        let host = host
        let app = gateway.application(host: host, port: port, beforeServerStarts: prepare) { port in
            logger.notice(
                "mizan-gateway listening on http://\(host):\(port)",
                metadata: ["mizan.store": "\(storeName)", "mizan.routes": "\(routeList.count)"]
            )
        }
        let sweeper = Sweeper(dispatcher: dispatcher, configuration: .init(nodeStaleAfter: .milliseconds(Int64(nodeStaleAfter * 1000))))
        services += [sweeper, app]
        let group = ServiceGroup(
            configuration: .init(services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        try await group.run()
    }
}
