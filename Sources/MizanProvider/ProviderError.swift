import MizanCore

/// Why a call to an upstream OpenAI-compatible server failed. Its description never holds
/// the upstream body or credentials; `detail` keeps a short excerpt for operators.
public struct ProviderError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure.
    public enum Kind: Sendable, Equatable {
        /// The connection could not be made or broke before a response arrived.
        case connect
        /// A time limit passed (connect, first byte, idle gap or overall deadline).
        case timeout
        /// The server answered with an error status.
        case status(Int)
        /// The answer was not what an OpenAI-compatible server sends.
        case invalidResponse
    }

    /// The kind of failure.
    public var kind: Kind
    /// Operator-facing detail (may hold an excerpt of the upstream body).
    public var detail: String

    /// Creates an error.
    /// - Parameters:
    ///   - kind: The kind.
    ///   - detail: Operator-facing detail.
    public init(_ kind: Kind, detail: String = "") {
        self.kind = kind
        self.detail = detail
    }

    /// Whether another route may be tried (no byte has reached the client yet): a connection
    /// failure, a timeout, a 5xx or a 429.
    public var isRetryable: Bool {
        switch kind {
        case .connect, .timeout: true
        case .status(let code): code >= 500 || code == 429
        case .invalidResponse: false
        }
    }

    public var description: String {
        switch kind {
        case .connect: "the upstream server could not be reached"
        case .timeout: "the upstream server did not answer in time"
        case .status(let code): "the upstream server answered \(code)"
        case .invalidResponse: "the upstream server sent an invalid answer"
        }
    }

    /// The upstream HTTP status, when the failure was one.
    public var statusCode: Int? {
        if case .status(let code) = kind { return code }
        return nil
    }

    /// The error as the gateway reports it to clients (never the upstream body: that stays in `debugDetail`).
    public var mizanError: MizanError {
        switch kind {
        case .timeout: MizanError(.deadlineExceeded, "The upstream provider did not answer in time.", debugDetail: detail)
        case .status(429): MizanError(.rateLimited, "The upstream provider is rate limiting requests.", debugDetail: detail)
        case .status(400), .status(422):
            MizanError(
                .badRequest, "The upstream provider rejected the request as invalid (HTTP \(statusCode ?? 400)).", debugDetail: detail)
        case .status(413): MizanError(.payloadTooLarge, "The upstream provider rejected the request as too large.", debugDetail: detail)
        default: MizanError(.upstreamFailure, "The upstream provider failed: \(description).", debugDetail: detail)
        }
    }
}
