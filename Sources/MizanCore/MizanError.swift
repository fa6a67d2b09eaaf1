/// An error raised by Mizan. It knows the HTTP status and OpenAI error body it maps to.
///
/// Codes are a struct over a private enum so that new codes can be added without breaking
/// users who switch over them. `description` is safe to show to a client: it never holds
/// secrets or upstream bodies; keep those in `debugDetail`.
public struct MizanError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of error.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: String, Sendable {
            case badRequest = "bad_request"
            case unauthorized = "invalid_api_key"
            case expiredAPIKey = "expired_api_key"
            case invalidNodeToken = "invalid_node_token"
            case invalidAdminToken = "invalid_admin_token"
            case forbidden = "forbidden"
            case notFound = "not_found"
            case methodNotAllowed = "method_not_allowed"
            case modelNotFound = "model_not_found"
            case jobNotFound = "job_not_found"
            case nodeNotFound = "node_not_found"
            case leaseConflict = "lease_conflict"
            case conflict = "conflict"
            case payloadTooLarge = "payload_too_large"
            case requestTimeout = "request_timeout"
            case deadlineExceeded = "deadline_exceeded"
            case noCapacity = "no_capacity"
            case rateLimited = "rate_limit_exceeded"
            case quotaExceeded = "insufficient_quota"
            case upstreamFailure = "upstream_error"
            case noHealthyNode = "no_healthy_node"
            case cancelled = "cancelled"
            case storeUnavailable = "store_unavailable"
            case overloaded = "overloaded"
            case notImplemented = "not_implemented"
            case internalError = "internal_error"
        }

        fileprivate let base: Base

        /// Malformed or invalid input (400).
        public static let badRequest = Code(base: .badRequest)
        /// A missing or wrong client API key (401).
        public static let unauthorized = Code(base: .unauthorized)
        /// A client API key past its expiry (401). On the wire it is `invalid_api_key`, as any key
        /// that does not work; the gateway tells it apart to count it.
        public static let expiredAPIKey = Code(base: .expiredAPIKey)
        /// A missing, unknown or revoked node or registration token on the agent API (401).
        public static let invalidNodeToken = Code(base: .invalidNodeToken)
        /// A missing or wrong admin token, or an admin API that is off (401).
        public static let invalidAdminToken = Code(base: .invalidAdminToken)
        /// Valid credentials of the wrong scope (403).
        public static let forbidden = Code(base: .forbidden)
        /// A resource that does not exist (404).
        public static let notFound = Code(base: .notFound)
        /// The endpoint exists but not with this method (405).
        public static let methodNotAllowed = Code(base: .methodNotAllowed)
        /// A model no route or node serves (404).
        public static let modelNotFound = Code(base: .modelNotFound)
        /// A job id that does not exist (404).
        public static let jobNotFound = Code(base: .jobNotFound)
        /// A node id that does not exist (404).
        public static let nodeNotFound = Code(base: .nodeNotFound)
        /// A completion or event for a lease that is no longer current (409).
        public static let leaseConflict = Code(base: .leaseConflict)
        /// A write that conflicts with the current state (409).
        public static let conflict = Code(base: .conflict)
        /// A request body over the limit (413).
        public static let payloadTooLarge = Code(base: .payloadTooLarge)
        /// The client took too long to send its request (408).
        public static let requestTimeout = Code(base: .requestTimeout)
        /// The request's deadline passed before it finished (504).
        public static let deadlineExceeded = Code(base: .deadlineExceeded)
        /// Every node is busy and the queue wait is over its limit (429).
        public static let noCapacity = Code(base: .noCapacity)
        /// A rate limit was hit (429).
        public static let rateLimited = Code(base: .rateLimited)
        /// A key's token budget is spent (429, OpenAI's `insufficient_quota`).
        public static let quotaExceeded = Code(base: .quotaExceeded)
        /// The upstream provider or node failed (502).
        public static let upstreamFailure = Code(base: .upstreamFailure)
        /// The model is known but nothing healthy serves it (503).
        public static let noHealthyNode = Code(base: .noHealthyNode)
        /// The client cancelled the request.
        public static let cancelled = Code(base: .cancelled)
        /// The store could not be reached (503).
        public static let storeUnavailable = Code(base: .storeUnavailable)
        /// The gateway holds as much of something as it keeps room for (agent channels) (503).
        public static let overloaded = Code(base: .overloaded)
        /// The feature is not available (501).
        public static let notImplemented = Code(base: .notImplemented)
        /// An unexpected failure (500).
        public static let internalError = Code(base: .internalError)

        /// The wire form used as OpenAI's `error.code`.
        public var rawValue: String { base == .expiredAPIKey ? Base.unauthorized.rawValue : base.rawValue }
        public var description: String { rawValue }
    }

    /// The kind of error.
    public var code: Code
    /// A message safe to show to clients and to log.
    public var message: String
    /// Details for operators (never sent to clients); may hold upstream text.
    public var debugDetail: String?
    /// OpenAI's `error.type` when it is not the code's own (a rate limit's `requests` or `tokens`).
    public var openAITypeOverride: String?
    /// Seconds after which trying again may succeed, sent as `Retry-After`.
    public var retryAfter: Double?

    /// Creates an error.
    /// - Parameters:
    ///   - code: The kind of error.
    ///   - message: A message safe to show to clients.
    ///   - debugDetail: Extra detail kept out of `description`.
    public init(_ code: Code, _ message: String, debugDetail: String? = nil) {
        self.code = code
        self.message = message
        self.debugDetail = debugDetail
    }

    public var description: String { "\(code): \(message)" }

    /// The HTTP status this error answers with.
    public var httpStatus: Int {
        switch code.base {
        case .badRequest: 400
        case .unauthorized, .expiredAPIKey, .invalidNodeToken, .invalidAdminToken: 401
        case .forbidden: 403
        case .notFound, .modelNotFound, .jobNotFound, .nodeNotFound: 404
        case .methodNotAllowed: 405
        case .requestTimeout: 408
        case .leaseConflict, .conflict: 409
        case .payloadTooLarge: 413
        case .noCapacity, .rateLimited, .quotaExceeded: 429
        case .cancelled: 499
        case .internalError: 500
        case .notImplemented: 501
        case .upstreamFailure: 502
        case .noHealthyNode, .storeUnavailable, .overloaded: 503
        case .deadlineExceeded: 504
        }
    }

    /// OpenAI's `error.type` for this error.
    public var openAIType: String {
        if let openAITypeOverride { return openAITypeOverride }
        return switch code.base {
        case .badRequest, .payloadTooLarge, .modelNotFound, .notFound, .methodNotAllowed, .jobNotFound, .nodeNotFound,
            .leaseConflict, .conflict, .notImplemented:
            "invalid_request_error"
        case .unauthorized, .expiredAPIKey, .invalidNodeToken, .invalidAdminToken, .forbidden: "authentication_error"
        case .noCapacity, .rateLimited: "rate_limit_error"
        case .quotaExceeded: "insufficient_quota"
        case .requestTimeout, .deadlineExceeded: "timeout_error"
        case .upstreamFailure, .noHealthyNode, .storeUnavailable, .overloaded, .cancelled, .internalError: "server_error"
        }
    }

    /// The error as OpenAI's envelope `{"error":{"message","type","code"}}`.
    public var envelope: OpenAIErrorEnvelope {
        OpenAIErrorEnvelope(error: .init(message: message, type: openAIType, code: code.rawValue))
    }

    /// Anthropic's `error.type` for this error (the `/v1/messages` endpoint answers in its shape).
    public var anthropicType: String {
        switch code.base {
        case .badRequest, .methodNotAllowed, .leaseConflict, .conflict, .notImplemented, .requestTimeout: "invalid_request_error"
        case .unauthorized, .expiredAPIKey, .invalidNodeToken, .invalidAdminToken: "authentication_error"
        case .forbidden: "permission_error"
        case .notFound, .modelNotFound, .jobNotFound, .nodeNotFound: "not_found_error"
        case .payloadTooLarge: "request_too_large"
        case .noCapacity, .rateLimited, .quotaExceeded: "rate_limit_error"
        case .noHealthyNode, .storeUnavailable, .overloaded: "overloaded_error"
        case .upstreamFailure, .deadlineExceeded, .cancelled, .internalError: "api_error"
        }
    }

    /// The error in Anthropic's shape, `{"type":"error","error":{"type","message"}}`.
    public var anthropicEnvelope: AnthropicErrorEnvelope {
        AnthropicErrorEnvelope(error: .init(type: anthropicType, message: message))
    }

    public static func == (lhs: MizanError, rhs: MizanError) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message
    }
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
public struct AnthropicErrorEnvelope: Sendable, Codable, Equatable {
    /// The error object.
    public struct Body: Sendable, Codable, Equatable {
        /// The error family, e.g. `invalid_request_error`.
        public var type: String
        /// A human-readable message.
        public var message: String
    }

    /// Always `error`.
    public var type = "error"
    /// The error.
    public var error: Body
}
