import HTTPTypes

extension HTTPField.Name {
    /// `X-Mizan-Deadline-Ms`: the deadline a client sets for its request, in milliseconds.
    static let mizanDeadline = HTTPField.Name("X-Mizan-Deadline-Ms")!
    /// `Idempotency-Key`: a retry with the same key (and body) attaches to the first request's
    /// job instead of running it again.
    static let idempotencyKey = HTTPField.Name("Idempotency-Key")!
    /// `X-Request-Id`: the request id, echoed or created.
    static let requestID = HTTPField.Name("X-Request-Id")!
    /// `X-Mizan-Overhead-Ms`: the gateway's own time until the answer's head, in milliseconds.
    static let mizanOverhead = HTTPField.Name("X-Mizan-Overhead-Ms")!
    /// Who served an answer: the provider route's name, or `node:<node name>`.
    static let mizanServedBy = HTTPField.Name("X-Mizan-Served-By")!
    /// `X-Mizan-Priority`: the class a client asks for (it may lower its key's, never raise it),
    /// and on the answer the class applied.
    static let mizanPriority = HTTPField.Name("X-Mizan-Priority")!
    /// `x-api-key`: how the Anthropic SDKs send their key.
    static let anthropicAPIKey = HTTPField.Name("x-api-key")!
}
