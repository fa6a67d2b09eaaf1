import MizanCore

/// The kinds of capacity a client request can be served by.
public enum Capacity: Sendable, Hashable {
    /// The model's provider routes (upstream OpenAI-compatible servers), in priority order with
    /// fallback and cool-down.
    case providerRoutes
    /// The agent nodes that serve the model, through a durable dispatch job.
    case agentNodes
}

/// The one place that decides where a client request goes: which kinds of capacity are tried,
/// in which order. The gateway tries each in turn; a kind with nothing for the model is skipped,
/// and a provider route's retryable failure moves on to the next kind.
///
/// Which node runs a job is the store's lease (`JobStore.lease`): the order of nodes is not a
/// placement's.
public protocol PlacementPolicy: Sendable {
    /// The kinds of capacity to try for a request, in order.
    /// - Parameters:
    ///   - model: The public model asked for.
    ///   - endpoint: The endpoint called.
    /// - Returns: The kinds to try, first first; a kind left out is never tried.
    func order(model: String, endpoint: Endpoint) -> [Capacity]

    /// How long a request for `model` waits for a node to lease it before it goes to the
    /// next kind of capacity (a spill); `nil` when it waits as any node-served request does.
    /// Used only when agent nodes come before another kind.
    func spillAfter(model: String) -> Duration?
}

extension PlacementPolicy {
    public func spillAfter(model: String) -> Duration? { nil }
}

/// Provider routes first, then agent nodes: a model's routes are tried before its nodes, and
/// nodes serve what no route serves or what every route failed (Mizan's default).
public struct RoutesFirst: PlacementPolicy {
    /// The policy.
    public init() {}

    public func order(model: String, endpoint: Endpoint) -> [Capacity] { Self.order }

    /// One array for every request (no allocation on the request's path).
    private static let order: [Capacity] = [.providerRoutes, .agentNodes]
}

extension PlacementPolicy where Self == RoutesFirst {
    /// Provider routes first, then agent nodes (the default).
    public static var routesFirst: RoutesFirst { RoutesFirst() }
}

/// Each model's placement as the routes file's `models:` list says (``ModelPlacement``); a
/// model it does not name is `cloud-first`.
public struct ModelPlacements: PlacementPolicy {
    private let byModel: [String: ModelPlacement]

    /// The placements of a routes file's `models:` list.
    public init(_ models: [ModelPlacement]) {
        byModel = Dictionary(models.map { ($0.model, $0) }, uniquingKeysWith: { first, _ in first })
    }

    public func order(model: String, endpoint: Endpoint) -> [Capacity] {
        switch byModel[model]?.placement ?? .cloudFirst {
        case .cloudFirst: Self.cloudFirst
        case .localFirst: Self.localFirst
        case .localOnly: Self.localOnly
        case .cloudOnly: Self.cloudOnly
        }
    }

    public func spillAfter(model: String) -> Duration? {
        guard let entry = byModel[model], entry.placement == .localFirst else { return nil }
        return .milliseconds(entry.spillAfterMs)
    }

    /// The placement of `model`.
    public func placement(of model: String) -> ModelPlacement.Kind { byModel[model]?.placement ?? .cloudFirst }

    // One array per kind (no allocation on the request's path).
    private static let cloudFirst: [Capacity] = [.providerRoutes, .agentNodes]
    private static let localFirst: [Capacity] = [.agentNodes, .providerRoutes]
    private static let localOnly: [Capacity] = [.agentNodes]
    private static let cloudOnly: [Capacity] = [.providerRoutes]
}
