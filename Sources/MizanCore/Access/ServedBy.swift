/// What served a request: a provider route or an agent node.
///
/// Usage records keep it as text (``recorded``): the route's name, or `node/<id>`; metrics
/// label it by ``metricLabel`` (a route's name, or `agents` for every node, so that nodes
/// cannot grow the label set).
public enum ServedBy: Sendable, Hashable {
    /// A provider route, by its name.
    case route(String)
    /// An agent node, by its id and, when the gateway knew it at the time, its name.
    case node(NodeID, name: String? = nil)

    /// The prefix of a node's recorded form.
    static let nodePrefix = "node/"

    /// The form an answer's `X-Mizan-Served-By` header shows: the route's name, or
    /// `node:<node name>` (`node:<id>` when the name is not at hand); `nil` when it would not
    /// be a plain header value (printable ASCII only).
    public var header: String? {
        let text =
            switch self {
            case .route(let name): name
            case .node(let id, let name): "node:" + (name ?? id.description)
            }
        guard !text.isEmpty, text.utf8.count <= 256, text.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
        return text
    }

    /// The form a usage record keeps: the route's name, or `node/<id>`.
    public var recorded: String {
        switch self {
        case .route(let name): name
        case .node(let id, _): Self.nodePrefix + id.description
        }
    }

    /// The `route` label of the gateway's metrics: a route's name, or `agents` for any node.
    public var metricLabel: String {
        switch self {
        case .route(let name): name
        case .node: "agents"
        }
    }
}
