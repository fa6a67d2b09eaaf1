import MizanCore

/// The union of what the gateway can serve: provider-routed models and the models advertised
/// by active, healthy agent nodes, each listed once.
public enum ModelCatalog {
    /// Where a model is served from.
    public enum Source: Sendable, Equatable {
        /// Provider routes serve it (they are tried first).
        case routes
        /// Only agent nodes serve it.
        case agents
    }

    /// The model list for `GET /v1/models`.
    /// - Parameters:
    ///   - routes: The route table.
    ///   - nodes: The registered nodes.
    /// - Returns: Every model once, sorted, `owned_by` naming where it is served.
    public static func list(routes: RouteTable, nodes: [Node]) -> ModelList {
        let agentModels = Set(nodes.filter(\.canLease).flatMap(\.models))
        let routed = Set(routes.models)
        let all = routed.union(agentModels).sorted()
        return ModelList(data: all.map { ModelList.Model(id: $0, ownedBy: routed.contains($0) ? "mizan-route" : "mizan-agent") })
    }

    /// Where `model` is served from, or `nil` when nothing serves it.
    /// - Parameters:
    ///   - model: The model.
    ///   - routes: The route table.
    ///   - nodes: The registered nodes (any status: a model advertised only by unhealthy or
    ///     revoked nodes is known but has no healthy capacity).
    /// - Returns: The source, or `nil`.
    public static func source(of model: String, routes: RouteTable, nodes: [Node]) -> Source? {
        if routes.routesByModel[model] != nil { return .routes }
        if nodes.contains(where: { $0.status != .pending && $0.models.contains(model) }) { return .agents }
        return nil
    }
}
