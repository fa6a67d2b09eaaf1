import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import MizanStore

/// The parts of a gateway that a module added to it may use — what the operator's console
/// (`MizanConsole`) reads and changes: the engine (nodes, jobs), the credentials (API keys),
/// the access store (usage, key counters, sessions), the provider routes and the instance's
/// recent traffic.
public struct GatewayParts: Sendable {
    /// The dispatch engine: nodes and jobs.
    public let dispatcher: Dispatcher
    /// API keys and the admin token.
    public let credentials: Credentials
    /// Usage, key counters and console sessions.
    public let access: any AccessStore
    /// The provider routes.
    public let routes: RouteTable
    /// The last hour of this instance's inference traffic.
    public let activity: RecentActivity
    /// The gateway's logger.
    public let logger: Logger
    /// Files, batches and background responses.
    public let batches: any BatchStore
    /// Cancels a batch as `POST /v1/batches/{id}/cancel` does (any key's): it turns
    /// `cancelling`, its running lines finish, the rest stop.
    public let cancelBatch: @Sendable (String) async throws -> Batch
}

/// Routes a module adds to the gateway's router, behind the same request middleware (request
/// id, OpenAI-shaped errors, the log line).
public protocol GatewayRoutes: Sendable {
    /// Adds the routes.
    /// - Parameter router: The gateway's router.
    func addRoutes(to router: Router<GatewayRequestContext>)
}

/// A module added to a gateway: made from the gateway's parts once they are built, or `nil`
/// when it does not apply (the console without an admin token).
///
/// ```swift
/// let gateway = Gateway(store: store, adminToken: token, additions: [.console()])
/// ```
public struct GatewayAddition: Sendable {
    let make: @Sendable (GatewayParts) -> (any GatewayRoutes)?

    /// An addition.
    /// - Parameter make: Makes its routes from the gateway's parts, or returns `nil`.
    public init(_ make: @escaping @Sendable (GatewayParts) -> (any GatewayRoutes)?) {
        self.make = make
    }
}
