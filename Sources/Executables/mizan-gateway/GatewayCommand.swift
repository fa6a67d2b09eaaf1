import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import MizanCore
import MizanDispatch
import MizanGateway
import MizanLogging
import MizanStore
import MizanStorePostgres
import MizanStoreSQLite
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
        abstract: "Run Mizan's OpenAI-compatible gateway (client, agent and admin APIs, and the web console).",
        discussion: """
            Clients call /v1/chat/completions and /v1/models with an API key (create one with `mizan keys create`). \
            Requests go to the provider routes of --routes first (lower priority number first, falling back on \
            failures), then to agent nodes that serve the model. With no --database-url the gateway keeps its \
            state (keys, nodes, jobs, usage) in the SQLite file mizan.sqlite in the working directory, which one \
            gateway holds at a time; a postgres:// URL stores it in PostgreSQL, which several gateways can share; \
            memory: keeps nothing across restarts. With an admin token the operator's web console is at /console \
            (sign in with the token).
            """,
        version: MizanVersion.current
    )

    @Option(help: "The address to listen on.")
    var host = "127.0.0.1"

    @Option(parsing: .unconditional, help: "The port to listen on (0 picks a free one; the address is logged at start).")
    var port = 8080

    @Option(
        name: .customLong("database-url"),
        help: ArgumentHelp(
            "Where the gateway keeps its state (env MIZAN_DATABASE_URL): sqlite:PATH, a file relative to the working directory or "
                + "absolute (one gateway per file); postgres://user:password@host:port/database (several gateways share it); or "
                + "memory: (nothing kept). Default: sqlite:mizan.sqlite."
        )
    )
    var databaseURL: String?

    @Option(
        name: .customLong("sqlite-durability"),
        help: ArgumentHelp(
            "With SQLite: normal (a commit survives a crash of the gateway; a power loss may lose the last commits) or full "
                + "(a commit survives a power loss too, at the cost of a disk flush per commit)."
        )
    )
    var sqliteDurability = "normal"

    @Flag(
        name: .customLong("no-agent-channel"),
        help: "Refuse agents' persistent channel (POST /agent/v1/channel answers 404); agents then use the HTTP agent API.")
    var noAgentChannel = false

    @Option(
        name: .customLong("console-session-hours"), parsing: .unconditional,
        help: "How long a sign-in to the web console lasts, in hours (1-720).")
    var consoleSessionHours: Double = 8

    @Option(
        help: ArgumentHelp(
            "A routes file, JSON or YAML (.yaml/.yml) (env MIZAN_ROUTES).",
            discussion: """
                Its routes: list names each model's upstream endpoints (priority: lower first; weight: how \
                routes of equal priority share requests). Its models: list places each model: cloud-first \
                (routes, then agent nodes; the default), local-first (agent nodes; a request no node \
                takes within spillAfterMs goes to the routes), local-only or cloud-only. Example:
                  models: [{model: llama3, placement: local-first, spillAfterMs: 300}]
                  routes: [{model: llama3, baseURL: https://api.example.com/v1, apiKeyEnv: CLOUD_KEY}]
                """))
    var routes: String?

    @Option(
        name: .customLong("admin-token"), help: "The admin API's bearer token (env MIZAN_ADMIN_TOKEN). Without one the admin API is off.")
    var adminToken: String?

    @Option(
        name: .customLong("default-deadline"), parsing: .unconditional,
        help: "Seconds a request may take when it names no deadline (header X-Mizan-Deadline-Ms).")
    var defaultDeadline: Double = 300

    @Option(
        name: .customLong("max-queue-wait"), parsing: .unconditional,
        help: "Seconds a request for an agent-served model may wait for a free node before it gets 429.")
    var maxQueueWait: Double = 120

    @Option(name: .customLong("max-body-bytes"), parsing: .unconditional, help: "The largest request body accepted (larger gets 413).")
    var maxBodyBytes = 8 << 20

    @Option(
        name: .customLong("token-reservation"), parsing: .unconditional,
        help: ArgumentHelp(
            "Output tokens a request of a key with a token limit or budget reserves when it names no max_tokens (its prompt's "
                + "estimate is reserved too); settled to the real count when it ends, so parallel bursts cannot overrun the limit."))
    var tokenReservation = 256

    @Option(name: .customLong("route-cooldown"), parsing: .unconditional, help: "Seconds a provider route that keeps failing is skipped.")
    var routeCooldown: Double = 30

    @Option(
        name: .customLong("node-stale-after"), parsing: .unconditional,
        help: "Seconds without a heartbeat after which a node counts as gone (its jobs are requeued).")
    var nodeStaleAfter: Double = 30

    @Option(
        name: .customLong("node-disconnect-grace"), parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds a node whose agent channel ended (without a goodbye) may take to come back before it counts as "
                + "disconnected: requests for its models stop counting on it and its jobs are requeued."))
    var nodeDisconnectGrace: Double = 5

    @Option(
        name: .customLong("cache-lifetime"),
        parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds the gateway trusts what it read about an API key, a node token or the node list before reading the store "
                + "again; a key or node revoked through another instance is refused within it (0 reads every time)."
        )
    )
    var cacheLifetime: Double = 1

    @Option(
        name: .customLong("idempotency-grace"), parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds an agent-served request sent with an Idempotency-Key keeps running after its client went away, for a retry "
                + "with the same key to attach to it."
        )
    )
    var idempotencyGrace: Double = 60

    @Option(
        name: .customLong("idle-timeout"), parsing: .unconditional,
        help: "Seconds a client connection may send nothing (idle between requests, or mid-head, mid-body) before it is closed.")
    var idleTimeout: Double = 60

    @Option(
        name: .customLong("body-timeout"), parsing: .unconditional, help: "Seconds a request body may take to arrive in full (408 after).")
    var bodyTimeout: Double = 60

    @Option(
        name: .customLong("max-connections"), parsing: .unconditional,
        help: "The most client connections open at once; past it new connections are closed at once.")
    var maxConnections = 4096

    @Option(
        name: .customLong("max-lease-wait"), parsing: .unconditional,
        help: "The longest seconds an agent's lease call waits for work before it answers with none (agents ask for 25).")
    var maxLeaseWait: Double = 60

    @Option(
        name: .customLong("database-timeout"), parsing: .unconditional,
        help: "Seconds the gateway waits at start for the database to answer before it gives up.")
    var databaseTimeout: Double = 15

    @Option(
        name: .customLong("memory-finished-jobs"), parsing: .unconditional,
        help: "With the in-memory store: the most finished jobs kept (the oldest go first).")
    var memoryFinishedJobs = 10_000

    @Option(
        name: .customLong("memory-usage-records"), parsing: .unconditional,
        help: "With the in-memory store: the most recent usage records kept for usage by time (1000-10000000; the totals count all).")
    var memoryUsageRecords = 100_000

    @Option(
        name: .customLong("promote-after"), parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds a request may wait for a node in its class before it rises one class (batch → standard → interactive).",
            discussion: "Nodes lease the highest class first (a key's --priority; a request may lower its own with "
                + "X-Mizan-Priority); within a class, keys take turns by --weight. Promotion keeps the lowest class from starving."))
    var promoteAfter: Double = 60

    @Option(
        name: .customLong("affinity-wait-ms"), parsing: .unconditional,
        help: ArgumentHelp(
            "Milliseconds a request is offered only to the node that served its conversation (or holds its model loaded).",
            discussion: "Past it, or at once when that node is busy, any node may take it; 0 turns affinity off."))
    var affinityWaitMs: Int = 50

    @Option(
        name: .customLong("affinity-memory"), parsing: .unconditional,
        help: "Seconds the node that answered a conversation is remembered for its next turn.")
    var affinityMemory: Double = 300

    @Option(
        name: .customLong("live-headroom"), parsing: .unconditional,
        help: ArgumentHelp(
            "Slots of each node kept for live traffic while it comes (0 turns it off).",
            discussion: "While requests above the batch class have come within --live-window, a node's last free slots take only "
                + "such requests, so that one finds a slot free instead of waiting for a batch's line to end. A node with no "
                + "more slots than this keeps none."))
    var liveHeadroom: Int = 1

    @Option(
        name: .customLong("live-window"), parsing: .unconditional,
        help: "Seconds after the last request above the batch class that --live-headroom holds.")
    var liveWindow: Double = 30

    @Option(
        name: .customLong("batch-spill-at"), parsing: .unconditional,
        help: ArgumentHelp(
            "The part of a batch's window after which its lines no node took may go to provider routes (0-1).",
            discussion: "A batch's lines run on agent nodes at the lowest class; once this part of its 24-hour window has gone, "
                + "lines still waiting go to the model's provider routes where its placement allows the cloud. A local-only "
                + "model's lines wait to the window's end and expire."))
    var batchSpillAt: Double = 0.8

    @Option(
        name: .customLong("batch-window-scale"), parsing: .unconditional,
        help: "A factor on every batch's 24-hour window, for trials and tests (0.001 makes it 86.4 seconds).")
    var batchWindowScale: Double = 1

    @Option(
        name: .customLong("batch-lines-in-flight"), parsing: .unconditional,
        help: "The most lines of one batch queued or running at once.")
    var batchLinesInFlight: Int = 64

    @Option(
        name: .customLong("batch-claim-lifetime"), parsing: .unconditional,
        help: ArgumentHelp(
            "Seconds an instance's claim on a batch or background response holds without renewal.",
            discussion: "A gateway that dies mid-batch is resumed by another instance (or itself, started again) after this."))
    var batchClaimLifetime: Double = 15

    @Option(name: .customLong("max-file-bytes"), parsing: .unconditional, help: "The largest file /v1/files takes (200 MB).")
    var maxFileBytes: Int = 200 << 20

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0-65535.") }
        guard defaultDeadline > 0, maxQueueWait > 0, routeCooldown >= 0 else {
            throw ValidationError("--default-deadline and --max-queue-wait must be positive, --route-cooldown not negative.")
        }
        guard idempotencyGrace >= 0, idempotencyGrace <= 3600 else { throw ValidationError("--idempotency-grace must be 0-3600 seconds.") }
        guard nodeStaleAfter > 0 else { throw ValidationError("--node-stale-after must be positive.") }
        guard tokenReservation >= 0, tokenReservation <= 1_000_000 else {
            throw ValidationError("--token-reservation must be 0-1000000 tokens.")
        }
        guard nodeDisconnectGrace >= 0, nodeDisconnectGrace <= 600 else {
            throw ValidationError("--node-disconnect-grace must be 0-600 seconds.")
        }
        guard cacheLifetime >= 0, cacheLifetime <= 60 else { throw ValidationError("--cache-lifetime must be 0-60 seconds.") }
        guard maxBodyBytes >= 1024, maxBodyBytes <= 1 << 30 else {
            throw ValidationError("--max-body-bytes must be 1024-1073741824 (bytes).")
        }
        guard idleTimeout > 0, idleTimeout <= 3600, bodyTimeout > 0, bodyTimeout <= 3600 else {
            throw ValidationError("--idle-timeout and --body-timeout must be 0-3600 seconds (more than 0).")
        }
        guard SQLiteStore.Durability(rawValue: sqliteDurability) != nil else {
            throw ValidationError("--sqlite-durability must be normal or full.")
        }
        guard consoleSessionHours >= 1, consoleSessionHours <= 720 else {
            throw ValidationError("--console-session-hours must be 1-720.")
        }
        guard memoryFinishedJobs >= 0 else { throw ValidationError("--memory-finished-jobs must not be negative.") }
        guard promoteAfter > 0, promoteAfter <= 86_400 else {
            throw ValidationError("--promote-after must be 0-86400 seconds (more than 0).")
        }
        guard (0...10_000).contains(affinityWaitMs) else { throw ValidationError("--affinity-wait-ms must be 0-10000.") }
        guard affinityMemory >= 0, affinityMemory <= 86_400 else { throw ValidationError("--affinity-memory must be 0-86400 seconds.") }
        guard memoryUsageRecords >= 1_000, memoryUsageRecords <= 10_000_000 else {
            throw ValidationError("--memory-usage-records must be 1000-10000000.")
        }
        guard maxLeaseWait >= 0, maxLeaseWait <= 3600 else { throw ValidationError("--max-lease-wait must be 0-3600 seconds.") }
        guard maxConnections >= 1, maxConnections <= 1_000_000 else { throw ValidationError("--max-connections must be 1-1000000.") }
        guard databaseTimeout > 0, databaseTimeout <= 600 else {
            throw ValidationError("--database-timeout must be 0-600 seconds (more than 0).")
        }
        guard (0...1024).contains(liveHeadroom) else { throw ValidationError("--live-headroom must be 0-1024 slots.") }
        guard liveWindow >= 0, liveWindow <= 86_400 else { throw ValidationError("--live-window must be 0-86400 seconds.") }
        guard batchSpillAt >= 0, batchSpillAt <= 1 else { throw ValidationError("--batch-spill-at must be 0-1.") }
        guard batchWindowScale >= 0.00001, batchWindowScale <= 1 else { throw ValidationError("--batch-window-scale must be 0.00001-1.") }
        guard (1...10_000).contains(batchLinesInFlight) else { throw ValidationError("--batch-lines-in-flight must be 1-10000.") }
        guard batchClaimLifetime >= 1, batchClaimLifetime <= 3600 else {
            throw ValidationError("--batch-claim-lifetime must be 1-3600 seconds.")
        }
        guard maxFileBytes >= 1024, maxFileBytes <= 1 << 31 else { throw ValidationError("--max-file-bytes must be 1024-2147483648.") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("Unknown --log-level '\(logLevel)'.") }
    }

    func run() async throws {
        do {
            try await serve()
        } catch let error as StartupError {
            // One line that says what to do, then a failing exit.
            FileHandle.standardError.write(Data("mizan-gateway: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }

    func serve() async throws {
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
        let routesFile: RoutesFile
        do {
            routesFile = try routesPath.map { try RoutesFile.load(path: $0) } ?? RoutesFile(routes: [])
        } catch let error as MizanError {
            throw StartupError(error.message)
        }
        let routeList = routesFile.routes
        let table = RouteTable(routes: routeList, cooldown: .seconds(routeCooldown))
        for route in routeList where route.apiKeyEnv.map({ environment[$0]?.isEmpty ?? true }) ?? false {
            logger.warning(
                "route has no upstream key: its apiKeyEnv is not set",
                metadata: ["mizan.route": "\(route.name)", "mizan.env": "\(route.apiKeyEnv ?? "")"])
        }
        let token = adminToken ?? environment["MIZAN_ADMIN_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if token == nil {
            logger.notice("no admin token: the admin API and the console are off (set --admin-token or MIZAN_ADMIN_TOKEN)")
        }
        let leaseWait = Duration.seconds(maxLeaseWait)
        var configuration = Gateway.Configuration(
            maxBodyBytes: maxBodyBytes,
            maxQueueWait: .seconds(maxQueueWait),
            idleTimeout: .seconds(idleTimeout),
            bodyTimeout: .seconds(bodyTimeout),
            maxConnections: maxConnections,
            agentChannel: !noAgentChannel,
            nodeDisconnectGrace: .seconds(nodeDisconnectGrace),
            tokenReservation: tokenReservation,
            placement: ModelPlacements(routesFile.models),
            dispatch: Dispatcher.Configuration(
                defaultDeadline: .seconds(defaultDeadline),
                defaultLeaseWait: min(.seconds(25), leaseWait),
                maxLeaseWait: leaseWait,
                cacheLifetime: .seconds(cacheLifetime),
                idempotentRetryGrace: .seconds(idempotencyGrace),
                nodeStaleAfter: .seconds(nodeStaleAfter),
                scheduling: .init(
                    promoteAfter: .seconds(promoteAfter), affinityWait: .milliseconds(affinityWaitMs),
                    affinityMemory: .seconds(affinityMemory), liveHeadroom: liveHeadroom, liveWindow: .seconds(liveWindow))
            )
        )

        configuration.batches = BatchSettings(
            spillAt: batchSpillAt, windowScale: batchWindowScale, linesInFlight: batchLinesInFlight,
            claimLifetime: .seconds(batchClaimLifetime), tick: .seconds(min(1, batchClaimLifetime / 5)), maxFileBytes: maxFileBytes,
            responseRetention: configuration.dispatch.sweeping.retention)

        let location = try StoreLocation(databaseURL ?? environment["MIZAN_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 })
        let (gateway, prepare, storeMetadata) = try await makeGateway(
            location, configuration: configuration, routes: table, adminToken: token, environment: environment, registry: registry,
            logger: logger, level: level
        )
        let host = host
        let services = gateway.services(host: host, port: port, beforeServerStarts: prepare) { port in
            logger.notice(
                "mizan-gateway listening on http://\(host):\(port)",
                metadata: storeMetadata.merging(
                    ["mizan.routes": "\(routeList.count)", "mizan.console": "\(token == nil ? "off" : "http://\(host):\(port)/console")"]
                ) { $1 }
            )
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) }, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch let error as StartupError {
            throw error
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw StartupError(
                "Cannot listen on \(host):\(port): the address is in use (another gateway?). Stop it or choose another --port.")
        } catch let error as IOError where error.errnoCode == EADDRNOTAVAIL || error.errnoCode == EACCES {
            throw StartupError("Cannot listen on \(host):\(port): \(error). Choose another --host or --port.")
        } catch is CancellationError {
            // Stopped by a signal during start-up.
        }
    }
}

/// A start-up failure with a message that says what to do.
struct StartupError: Error, CustomStringConvertible {
    var description: String { message }
    var message: String
    init(_ message: String) { self.message = message }

    static func databaseTimeout(address: String, limit: Duration) -> StartupError {
        StartupError(
            "The PostgreSQL database at \(address) did not answer within \(limit.timeInterval) seconds. Check that it runs and "
                + "--database-url (or raise --database-timeout)."
        )
    }
}
