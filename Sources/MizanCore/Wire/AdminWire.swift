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

    /// `POST /admin/v1/keys`: a client API key to issue.
    public struct CreateKeyRequest: Sendable, Codable, Equatable {
        /// A human name (1 to 128 printable characters).
        public var name: String

        /// Creates a request.
        public init(name: String) { self.name = name }
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

        /// Creates an answer.
        public init(id: String, name: String, prefix: String, key: String) {
            self.id = id
            self.name = name
            self.prefix = prefix
            self.key = key
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
