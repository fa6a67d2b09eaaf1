/// What served a request: a provider route or an agent node.
///
/// Usage records keep it as text (``recorded``): the route's name, or `node/<id>`; metrics
/// label it by ``metricLabel`` (a route's name, or `agents` for every node, so that nodes
/// cannot grow the label set).
public enum ServedBy: Sendable, Hashable, CustomStringConvertible {
    /// A provider route, by its name.
    case route(String)
    /// An agent node, by its id and, when the gateway knew it at the time, its name.
    case node(NodeID, name: String? = nil)

    /// The prefix of a node's recorded form.
    static let nodePrefix = "node/"

    /// The form a usage record keeps: the route's name, or `node/<id>`.
    public var recorded: String {
        switch self {
        case .route(let name): name
        case .node(let id, _): Self.nodePrefix + id.description
        }
    }

    /// Reads a usage record's form back (a node's name is not kept there): `node/<id>` with a
    /// valid id is a node, anything else a route's name.
    /// - Parameter recorded: What ``recorded`` made.
    public init(recorded: String) {
        if recorded.hasPrefix(Self.nodePrefix), let id = NodeID(String(recorded.dropFirst(Self.nodePrefix.count))) {
            self = .node(id)
        } else {
            self = .route(recorded)
        }
    }

    /// The `route` label of the gateway's metrics: a route's name, or `agents` for any node.
    public var metricLabel: String {
        switch self {
        case .route(let name): name
        case .node: "agents"
        }
    }

    public var description: String {
        switch self {
        case .route(let name): "route \(name)"
        case .node(let id, let name): name.map { "node \($0) (\(id))" } ?? "node \(id)"
        }
    }
}
