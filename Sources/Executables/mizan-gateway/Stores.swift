import Foundation
import Logging
import MizanConsole
import MizanCore
import MizanGateway
import MizanStore
import MizanStorePostgres
import MizanStoreSQLite
import PostgresNIO
import Prometheus
import ServiceLifecycle

/// Where the gateway keeps its state, from `--database-url`.
enum StoreLocation: Equatable {
    /// Nothing kept across restarts.
    case memory
    /// One SQLite file (absolute path).
    case sqlite(path: String)
    /// A PostgreSQL database.
    case postgres(url: String)

    /// The default: `mizan.sqlite` in the working directory.
    static let defaultURL = "sqlite:mizan.sqlite"

    /// Reads a `--database-url`; `nil` is the default.
    init(_ url: String?) throws {
        let text = url ?? Self.defaultURL
        if text == "memory:" || text == "memory" {
            self = .memory
        } else if text.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path = String(path.dropFirst(2)) }  // sqlite:///absolute/path
            guard !path.isEmpty else { throw StartupError("--database-url sqlite: needs a file, e.g. sqlite:mizan.sqlite.") }
            let base = URL(fileURLWithPath: FileManager.default.currentDirectoryPath, isDirectory: true)
            self = .sqlite(path: URL(fileURLWithPath: path, relativeTo: base).standardizedFileURL.path)
        } else if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            self = .postgres(url: text)
        } else {
            throw StartupError("--database-url must be sqlite:PATH, postgres://user:password@host:port/database or memory:.")
        }
    }
}

extension GatewayCommand {
    /// The gateway over the store `location` names, the start-up work it needs before the port
    /// opens, and the listening line's metadata naming the store.
    func makeGateway(
        _ location: StoreLocation,
        configuration: Gateway.Configuration,
        routes table: RouteTable,
        adminToken token: String?,
        environment: [String: String],
        registry: PrometheusCollectorRegistry,
        logger: Logger,
        level: Logger.Level
    ) async throws -> (Gateway, (@Sendable () async throws -> Void)?, Logger.Metadata) {
        func gateway(_ store: some DispatchStore & AccessStore & BatchStore, services: [any Service]) -> Gateway {
            Gateway(
                store: store, storeServices: services, routes: table, adminToken: token, configuration: configuration,
                environment: environment, metricsRegistry: registry,
                additions: [.console(sessionLifetime: .seconds(consoleSessionHours * 3600))], logger: logger
            )
        }
        switch location {
        case .memory:
            return (
                gateway(InMemoryStore(maxFinishedJobs: memoryFinishedJobs, maxUsageRecords: memoryUsageRecords), services: []), nil,
                ["mizan.store": "memory"]
            )
        case .sqlite(let path):
            let store: SQLiteStore
            do {
                store = try await SQLiteStore.open(
                    path: path, durability: SQLiteStore.Durability(rawValue: sqliteDurability) ?? .normal,
                    logger: Logger(label: "mizan.store.sqlite")
                )
            } catch let error as SQLiteStoreError {
                throw StartupError(error.description)
            }
            return (gateway(store, services: [store]), nil, ["mizan.store": "sqlite", "mizan.store.file": "\(path)"])
        case .postgres(let url):
            return try postgresGateway(url: url, make: gateway, logger: logger, level: level)
        }
    }

    private func postgresGateway(
        url: String,
        make: (PostgresStore, [any Service]) -> Gateway,
        logger: Logger,
        level: Logger.Level
    ) throws -> (Gateway, (@Sendable () async throws -> Void)?, Logger.Metadata) {
        let postgresConfiguration: PostgresClient.Configuration
        do {
            postgresConfiguration = try PostgresClient.Configuration(url: url)
        } catch {
            throw StartupError("--database-url is not a postgres://user:password@host:port/database URL.")
        }
        // The pool retries connecting on its own and says so at info on every try; its
        // warnings and errors are enough here (start-up failure is reported once, below).
        var clientLogger = Logger(label: "mizan.store.postgres.client")
        clientLogger.logLevel = max(level, .warning)
        let client = PostgresClient(configuration: postgresConfiguration, backgroundLogger: clientLogger)
        let store = PostgresStore(client: client, logger: Logger(label: "mizan.store.postgres"))
        let address = "\(postgresConfiguration.host ?? "?"):\(postgresConfiguration.port ?? 5432)"
        let limit = Duration.seconds(databaseTimeout)
        let prepare: @Sendable () async throws -> Void = {
            // Bounded, and ended by SIGTERM/SIGINT: an unreachable database must not hold the start.
            do {
                try await cancelWhenGracefulShutdown {
                    try await withTimeLimit(limit, timeoutError: { StartupError.databaseTimeout(address: address, limit: limit) }) {
                        try await store.migrate()
                    }
                }
            } catch let error as StartupError {
                throw error
            } catch  where Task.isShuttingDownGracefully {
                throw CancellationError()
            } catch {
                throw StartupError(
                    "Cannot use the PostgreSQL database at \(address): \(String(reflecting: error).prefix(300)). Check --database-url.")
            }
        }
        return (make(store, [client, store]), prepare, ["mizan.store": "postgresql", "mizan.store.address": "\(address)"])
    }
}
