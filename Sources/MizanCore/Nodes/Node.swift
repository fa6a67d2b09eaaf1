import Foundation

/// An agent node: a machine that leases jobs for the models it advertises.
public struct Node: Sendable, Equatable, Codable {
    /// Whether the node may lease.
    public enum Status: String, Sendable, Codable {
        /// Created; its registration token has not been exchanged yet.
        case pending
        /// Registered and allowed to lease.
        case active
        /// Revoked by an operator; its calls are refused.
        case revoked
    }

    /// The node's own view of its local provider.
    public enum Health: String, Sendable, Codable {
        /// Not reported yet.
        case unknown
        /// The local provider answers.
        case healthy
        /// The local provider does not answer; the node gets no jobs.
        case unhealthy
    }

    /// The node id.
    public var id: NodeID
    /// A human name.
    public var name: String
    /// The public models it serves.
    public var models: [String]
    /// The endpoints its local server serves, for every one of its models (in
    /// ``Endpoint``'s order). A node that reports none (an agent older than endpoints) serves
    /// chat completions only.
    public var endpoints: [Endpoint]
    /// How many jobs it may hold at once; the gateway enforces it.
    public var maxConcurrency: Int
    /// Free-form labels.
    public var labels: [String: String]
    /// Whether it may lease.
    public var status: Status
    /// Its local provider's health.
    public var health: Health
    /// Jobs in flight as it last reported.
    public var inFlight: Int
    /// When it was last heard from.
    public var lastSeen: Date?
    /// When its agent was last found gone: it said goodbye, or its channel to the gateway ended
    /// and it did not come back within the grace. `nil` while it is connected (a heartbeat or a
    /// new channel clears it). A disconnected node is not capacity and its leases are taken back.
    public var disconnectedAt: Date?
    /// When it was created.
    public var createdAt: Date
    /// The models its local server holds loaded (in memory, ready to answer without loading
    /// first), as its last report said; empty when unknown (not reported, or the agent could
    /// not find out).
    public var loadedModels: [String]

    /// Creates a node record.
    /// - Parameters:
    ///   - id: The node id.
    ///   - name: A human name.
    ///   - models: The models it serves.
    ///   - endpoints: The endpoints it serves (all of them by default).
    ///   - maxConcurrency: Its concurrency limit.
    ///   - labels: Free-form labels.
    ///   - status: Its status.
    ///   - health: Its health.
    ///   - inFlight: Jobs in flight.
    ///   - lastSeen: When it was last heard from.
    ///   - disconnectedAt: When its agent was last found gone (`nil`: connected).
    ///   - createdAt: When it was created.
    ///   - loadedModels: The models its local server holds loaded (empty: unknown).
    public init(
        id: NodeID = NodeID(),
        name: String,
        models: [String] = [],
        endpoints: [Endpoint] = Endpoint.all,
        maxConcurrency: Int = 1,
        labels: [String: String] = [:],
        status: Status = .pending,
        health: Health = .unknown,
        inFlight: Int = 0,
        lastSeen: Date? = nil,
        disconnectedAt: Date? = nil,
        createdAt: Date = Date(),
        loadedModels: [String] = []
    ) {
        self.id = id
        self.name = name
        self.models = models
        self.endpoints = Endpoint.normalized(endpoints)
        self.maxConcurrency = maxConcurrency
        self.labels = labels
        self.status = status
        self.health = health
        self.inFlight = inFlight
        self.lastSeen = lastSeen
        self.disconnectedAt = disconnectedAt
        self.createdAt = createdAt
        self.loadedModels = loadedModels
    }

    /// Whether the node may be handed jobs now.
    public var canLease: Bool { status == .active && health != .unhealthy }

    /// Whether the node serves `model` on `endpoint`.
    public func serves(_ model: String, on endpoint: Endpoint) -> Bool {
        endpoints.contains(endpoint) && models.contains(model)
    }

    enum CodingKeys: String, CodingKey {
        case id, name, models, endpoints, maxConcurrency, labels, status, health, inFlight, lastSeen, disconnectedAt, createdAt
        case loadedModels
    }

    /// Decodes a node; one recorded without endpoints serves chat completions only, one without
    /// loaded models has them unknown.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(NodeID.self, forKey: .id)
        name = try container.decode(String.self, forKey: .name)
        models = try container.decode([String].self, forKey: .models)
        endpoints = Endpoint.normalized(try container.decodeIfPresent([Endpoint].self, forKey: .endpoints) ?? [.chatCompletions])
        maxConcurrency = try container.decode(Int.self, forKey: .maxConcurrency)
        labels = try container.decode([String: String].self, forKey: .labels)
        status = try container.decode(Status.self, forKey: .status)
        health = try container.decode(Health.self, forKey: .health)
        inFlight = try container.decode(Int.self, forKey: .inFlight)
        lastSeen = try container.decodeIfPresent(Date.self, forKey: .lastSeen)
        disconnectedAt = try container.decodeIfPresent(Date.self, forKey: .disconnectedAt)
        createdAt = try container.decode(Date.self, forKey: .createdAt)
        loadedModels = try container.decodeIfPresent([String].self, forKey: .loadedModels) ?? []
    }
}

/// What a node reports about itself at registration and in every heartbeat.
public struct NodeReport: Sendable, Equatable, Codable {
    /// The models it serves.
    public var models: [String]
    /// The endpoints its local server serves (an agent that names none serves chat
    /// completions only).
    public var endpoints: [Endpoint]
    /// How many jobs it can run at once.
    public var maxConcurrency: Int
    /// Its local provider's health.
    public var health: Node.Health
    /// Jobs it is running now.
    public var inFlight: Int
    /// Free-form labels.
    public var labels: [String: String]
    /// Whether the agent is stopping: it leases nothing more and finishes what it runs. A
    /// draining node stays ``NodeCondition/disconnected`` (it said goodbye) while it reports.
    public var draining: Bool
    /// The models its local server holds loaded now, by the names the node serves them under;
    /// `nil` when the agent does not know (the gateway then knows nothing either). At most
    /// ``maxLoadedModels`` names.
    public var loadedModels: [String]?

    /// The most names ``loadedModels`` may hold.
    public static let maxLoadedModels = 64

    /// Creates a report.
    /// - Parameters:
    ///   - models: The models it serves.
    ///   - endpoints: The endpoints it serves (all of them by default).
    ///   - maxConcurrency: Its concurrency limit (at least 1).
    ///   - health: Its local provider's health.
    ///   - inFlight: Jobs running now.
    ///   - labels: Free-form labels.
    ///   - draining: Whether the agent is stopping.
    ///   - loadedModels: The models its local server holds loaded (`nil`: unknown).
    public init(
        models: [String],
        endpoints: [Endpoint] = Endpoint.all,
        maxConcurrency: Int,
        health: Node.Health = .healthy,
        inFlight: Int = 0,
        labels: [String: String] = [:],
        draining: Bool = false,
        loadedModels: [String]? = nil
    ) {
        self.models = models
        self.endpoints = Endpoint.normalized(endpoints)
        self.maxConcurrency = max(1, maxConcurrency)
        self.health = health
        self.inFlight = inFlight
        self.labels = labels
        self.draining = draining
        self.loadedModels = loadedModels
    }

    enum CodingKeys: String, CodingKey { case models, endpoints, maxConcurrency, health, inFlight, labels, draining, loadedModels }

    /// Writes the report; `draining` and `loadedModels` only when they are set (what older
    /// gateways read is unchanged).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(models, forKey: .models)
        try container.encode(endpoints, forKey: .endpoints)
        try container.encode(maxConcurrency, forKey: .maxConcurrency)
        try container.encode(health, forKey: .health)
        try container.encode(inFlight, forKey: .inFlight)
        try container.encode(labels, forKey: .labels)
        if draining { try container.encode(true, forKey: .draining) }
        try container.encodeIfPresent(loadedModels, forKey: .loadedModels)
    }

    /// Decodes a report; one without endpoints (an older agent) serves chat completions only.
    /// Endpoint names this gateway does not know are left out.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        models = try container.decode([String].self, forKey: .models)
        let names = try container.decodeIfPresent([String].self, forKey: .endpoints)
        // Bounded like every other field of a report: at most 64 names of at most 64 bytes.
        if let names, names.count > 64 || names.contains(where: { $0.utf8.count > 64 }) {
            throw DecodingError.dataCorruptedError(
                forKey: .endpoints, in: container, debugDescription: "at most 64 endpoints, each at most 64 bytes")
        }
        endpoints = Endpoint.normalized(names.map { $0.compactMap(Endpoint.init(rawValue:)) } ?? [.chatCompletions])
        maxConcurrency = try container.decode(Int.self, forKey: .maxConcurrency)
        health = try container.decode(Node.Health.self, forKey: .health)
        inFlight = try container.decode(Int.self, forKey: .inFlight)
        labels = try container.decode([String: String].self, forKey: .labels)
        draining = try container.decodeIfPresent(Bool.self, forKey: .draining) ?? false
        loadedModels = try container.decodeIfPresent([String].self, forKey: .loadedModels)
    }
}
