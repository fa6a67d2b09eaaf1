import Foundation

/// The bodies of the gateway's admin API (`/admin/v1/…`), shared by the gateway and the
/// `mizan` command line so that both read and write the same shapes. Dates are ISO 8601
/// (``AgentWire/encoder()``); lists come as `{"data": […]}`.
public enum AdminWire {
    /// `POST /admin/v1/nodes`: a node to create.
    public struct CreateNodeRequest: Sendable, Codable, Equatable {
        /// A human name (1 to 128 printable characters).
        public var name: String
        /// Free-form labels.
        public var labels: [String: String]?

        /// Creates a request.
        public init(name: String, labels: [String: String]? = nil) {
            self.name = name
            self.labels = labels
        }
    }

    /// `POST /admin/v1/nodes`' answer: the node and its one-time registration token.
    public struct CreatedNode: Sendable, Codable, Equatable {
        /// The node's id.
        public var id: NodeID
        /// Its name.
        public var name: String
        /// The token `mizan-agent` registers with once; it cannot be shown again.
        public var registrationToken: String

        /// Creates an answer.
        public init(id: NodeID, name: String, registrationToken: String) {
            self.id = id
            self.name = name
            self.registrationToken = registrationToken
        }
    }

    /// A node as the admin API lists it (`GET /admin/v1/nodes`): the node's fields and, beside
    /// them, its ``NodeCondition`` at the moment of the answer (`"condition"`), decided as the
    /// gateway decides it for requests.
    public struct NodeEntry: Sendable, Codable, Equatable {
        /// The node.
        public var node: Node
        /// How it stands now.
        public var condition: NodeCondition

        /// Creates an entry.
        public init(node: Node, condition: NodeCondition) {
            self.node = node
            self.condition = condition
        }

        private enum CodingKeys: String, CodingKey { case condition }

        /// Reads the node's fields and its condition (``NodeCondition/stale`` when absent).
        public init(from decoder: any Decoder) throws {
            node = try Node(from: decoder)
            condition = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(NodeCondition.self, forKey: .condition) ?? .stale
        }

        /// Writes the node's fields with `"condition"` beside them.
        public func encode(to encoder: any Encoder) throws {
            try node.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(condition, forKey: .condition)
        }
    }

    /// `POST /admin/v1/keys`: a client API key to issue, with what it may do beside its name:
    /// `{"name", "models", "limits", "budget", "expiresAt", "priority", "weight", "maxQueued"}`
    /// (all but the name optional).
    public struct CreateKeyRequest: Sendable, Codable, Equatable {
        /// A human name (1 to 128 printable characters).
        public var name: String
        /// What the key may do.
        public var policy: KeyPolicy

        /// Creates a request.
        public init(name: String, policy: KeyPolicy = KeyPolicy()) {
            self.name = name
            self.policy = policy
        }

        private enum CodingKeys: String, CodingKey { case name }

        public init(from decoder: any Decoder) throws {
            name = try decoder.container(keyedBy: CodingKeys.self).decode(String.self, forKey: .name)
            policy = try KeyPolicy(from: decoder)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try policy.encode(to: encoder)
        }
    }

    /// A key as `GET /admin/v1/keys[/{id}]` shows it: its record and settings, and for a key
    /// with limits or a budget where it stands now.
    public struct KeyView: Sendable, Codable, Equatable {
        /// Where a counted key stands.
        public struct Consumption: Sendable, Codable, Equatable {
            /// Requests per minute: the limit, what is left, seconds until the bucket is full.
            public var requests: Window?
            /// Tokens per minute: the same.
            public var tokens: Window?
            /// Requests in flight (keys with a concurrency limit: others do not count them).
            public var inFlight: Int?
            /// Tokens used in the budget's current period.
            public var budgetTokensUsed: Int?
            /// When that period began (absent for a `total` budget).
            public var budgetPeriodStart: Date?

            public init(requests: Window?, tokens: Window?, inFlight: Int?, budgetTokensUsed: Int?, budgetPeriodStart: Date?) {
                self.requests = requests
                self.tokens = tokens
                self.inFlight = inFlight
                self.budgetTokensUsed = budgetTokensUsed
                self.budgetPeriodStart = budgetPeriodStart
            }
        }

        /// A rate's standing.
        public struct Window: Sendable, Codable, Equatable {
            public var limit: Int
            public var remaining: Int
            public var resetSeconds: Double

            public init(limit: Int, remaining: Int, resetSeconds: Double) {
                self.limit = limit
                self.remaining = remaining
                self.resetSeconds = resetSeconds
            }
        }

        /// The key.
        public var key: APIKey
        /// Where it stands (keys with limits or a budget only).
        public var consumption: Consumption?

        public init(key: APIKey, consumption: Consumption?) {
            self.key = key
            self.consumption = consumption
        }

        private enum CodingKeys: String, CodingKey { case consumption }

        public init(from decoder: any Decoder) throws {
            key = try APIKey(from: decoder)
            consumption = try decoder.container(keyedBy: CodingKeys.self).decodeIfPresent(Consumption.self, forKey: .consumption)
        }

        public func encode(to encoder: any Encoder) throws {
            try key.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(consumption, forKey: .consumption)
        }

        /// The view of a key and its counters at `now`.
        public static func of(_ key: APIKey, counters: KeyCounters?, now: Date) -> KeyView {
            guard key.policy.isCounted, let counters else { return KeyView(key: key, consumption: nil) }
            let status = KeyLimiter.status(counters, policy: key.policy, now: now.timeIntervalSinceReferenceDate)
            let window = { (value: RateLimitStatus.Window?) in
                value.map { Window(limit: $0.limit, remaining: $0.remaining, resetSeconds: ($0.reset * 1000).rounded() / 1000) }
            }
            let start = key.policy.budget.flatMap { $0.period == .total ? nil : $0.periodStart(of: now) }
            return KeyView(
                key: key,
                consumption: Consumption(
                    requests: window(status.requests), tokens: window(status.tokens),
                    inFlight: key.policy.limits?.concurrentRequests.map { _ in
                        counters.holds.values.filter { $0 > now.timeIntervalSinceReferenceDate }.count
                    },
                    budgetTokensUsed: key.policy.budget.map { _ in KeyLimiter.periodTokens(counters, policy: key.policy, now: now) },
                    budgetPeriodStart: start))
        }
    }

    /// `POST /admin/v1/keys`' answer: the key's record and its secret, shown once.
    public struct CreatedKey: Sendable, Codable, Equatable {
        /// The key's id.
        public var id: String
        /// Its name.
        public var name: String
        /// The secret's first characters, to tell keys apart in listings.
        public var prefix: String
        /// The secret; it cannot be shown again.
        public var key: String
        /// What the key may do (its fields beside the others on the wire).
        public var policy: KeyPolicy

        /// Creates an answer.
        public init(id: String, name: String, prefix: String, key: String, policy: KeyPolicy = KeyPolicy()) {
            self.id = id
            self.name = name
            self.prefix = prefix
            self.key = key
            self.policy = policy
        }

        private enum CodingKeys: String, CodingKey { case id, name, prefix, key }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            id = try container.decode(String.self, forKey: .id)
            name = try container.decode(String.self, forKey: .name)
            prefix = try container.decode(String.self, forKey: .prefix)
            key = try container.decode(String.self, forKey: .key)
            policy = try KeyPolicy(from: decoder)
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            try container.encode(name, forKey: .name)
            try container.encode(prefix, forKey: .prefix)
            try container.encode(key, forKey: .key)
            try policy.encode(to: encoder)
        }
    }

    /// A job as the admin API shows it: its metadata, never the client's messages or the answer.
    public struct JobSummary: Sendable, Codable, Equatable {
        public var id: JobID
        public var requestID: String
        public var model: String
        /// The endpoint called (absent from gateways that served chat completions only).
        public var endpoint: Endpoint?
        public var state: JobState
        public var stream: Bool
        public var attempt: Int
        public var maxAttempts: Int
        public var priority: Int
        public var nodeID: NodeID?
        public var apiKeyID: String?
        public var deadline: Date
        public var createdAt: Date
        public var leasedAt: Date?
        public var finishedAt: Date?
        public var errorCode: String?
        public var errorMessage: String?
        public var usage: TokenUsage?
        /// The size of the client's body, in bytes.
        public var bodyBytes: Int
        /// The size of the answer, in bytes, once there is one.
        public var resultBytes: Int?
        /// The attempts before the current one, each handed back (absent when there were none).
        public var earlierAttempts: [JobAttempt]?
        /// The job's class (``priority`` is its rank).
        public var priorityClass: PriorityClass?
        /// Why the job was offered to one node first: `prefix`, `loaded` or `none`.
        public var affinity: JobScheduling.Affinity?
        /// The node it was offered to first.
        public var preferredNode: NodeID?
        /// Its place among its class's queued jobs.
        public var fairTag: Double?

        /// The summary of a job.
        public init(_ job: Job) {
            id = job.id
            requestID = job.requestID
            model = job.model
            endpoint = job.endpoint
            state = job.state
            stream = job.stream
            attempt = job.attempt
            maxAttempts = job.maxAttempts
            priority = job.priority
            nodeID = job.nodeID
            apiKeyID = job.apiKeyID
            deadline = job.deadline
            createdAt = job.createdAt
            leasedAt = job.leasedAt
            finishedAt = job.finishedAt
            errorCode = job.errorCode
            errorMessage = job.errorMessage
            usage = job.usage
            bodyBytes = job.body.count
            resultBytes = job.result?.count
            earlierAttempts = job.earlierAttempts.isEmpty ? nil : job.earlierAttempts
            priorityClass = job.priorityClass
            affinity = job.scheduling.affinity
            preferredNode = job.scheduling.preferredNode
            fairTag = job.scheduling.fairTag
        }
    }

    /// `{"data": […]}`, the shape of every admin list.
    public struct List<Element: Sendable & Codable>: Sendable, Codable {
        /// The elements.
        public var data: [Element]

        /// Wraps elements.
        public init(data: [Element]) { self.data = data }
    }
}
