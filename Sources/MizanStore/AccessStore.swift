import Foundation
import MizanCore

/// A client API key as stored: never the key itself, only its hash (kept by the store).
public struct APIKey: Sendable, Equatable, Codable {
    /// The key's id (a time-ordered UUID in text).
    public var id: String
    /// A human name.
    public var name: String
    /// The first characters of the key, to tell keys apart in listings.
    public var prefix: String
    /// When it was created.
    public var createdAt: Date
    /// When it was revoked, if it was.
    public var revokedAt: Date?

    /// Creates a key record.
    /// - Parameters:
    ///   - id: The id (a new time-ordered one by default).
    ///   - name: A human name.
    ///   - prefix: The key's first characters.
    ///   - createdAt: When it was created.
    ///   - revokedAt: When it was revoked.
    public init(id: String = TimeOrderedID.make().uuidString.lowercased(), name: String, prefix: String, createdAt: Date, revokedAt: Date? = nil) {
        self.id = id
        self.name = name
        self.prefix = prefix
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    /// Whether the key may be used.
    public var isActive: Bool { revokedAt == nil }
}

/// What one request used: every request, provider-routed or agent-served, leaves one.
public struct UsageRecord: Sendable, Equatable {
    /// The gateway request id.
    public var requestID: String
    /// The API key that made it.
    public var apiKeyID: String?
    /// The public model.
    public var model: String
    /// The provider route or node that served it.
    public var servedBy: String?
    /// The HTTP status answered.
    public var status: Int
    /// Time from request to response end, in milliseconds.
    public var latencyMilliseconds: Double
    /// Token counts, when known.
    public var usage: TokenUsage?
    /// When it finished.
    public var createdAt: Date

    /// Creates a record.
    /// - Parameters:
    ///   - requestID: The request id.
    ///   - apiKeyID: The API key.
    ///   - model: The public model.
    ///   - servedBy: The route or node.
    ///   - status: The HTTP status.
    ///   - latencyMilliseconds: The latency.
    ///   - usage: Token counts.
    ///   - createdAt: When it finished.
    public init(
        requestID: String,
        apiKeyID: String?,
        model: String,
        servedBy: String?,
        status: Int,
        latencyMilliseconds: Double,
        usage: TokenUsage?,
        createdAt: Date
    ) {
        self.requestID = requestID
        self.apiKeyID = apiKeyID
        self.model = model
        self.servedBy = servedBy
        self.status = status
        self.latencyMilliseconds = latencyMilliseconds
        self.usage = usage
        self.createdAt = createdAt
    }
}

/// Usage summed per API key and model.
public struct UsageSummary: Sendable, Equatable, Codable {
    /// The API key (nil for requests without one).
    public var apiKeyID: String?
    /// The public model.
    public var model: String
    /// How many requests.
    public var requests: Int
    /// Prompt tokens in all.
    public var promptTokens: Int
    /// Completion tokens in all.
    public var completionTokens: Int

    /// Creates a summary row.
    public init(apiKeyID: String?, model: String, requests: Int, promptTokens: Int, completionTokens: Int) {
        self.apiKeyID = apiKeyID
        self.model = model
        self.requests = requests
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

/// Storage of client API keys (as hashes) and usage records.
public protocol AccessStore: Sendable {
    /// Stores a new key with the SHA-256 hash of its secret.
    /// - Parameters:
    ///   - key: The key record.
    ///   - hash: SHA-256 of the secret key.
    /// - Returns: The stored key.
    func createAPIKey(_ key: APIKey, hash: Data) async throws -> APIKey

    /// Lists every key, oldest first.
    /// - Returns: The keys, revoked ones included.
    func apiKeys() async throws -> [APIKey]

    /// Revokes a key; it stops working at once.
    /// - Parameters:
    ///   - id: The key id.
    ///   - now: The current time.
    /// - Returns: The revoked key.
    /// - Throws: ``MizanError`` `notFound`.
    func revokeAPIKey(_ id: String, now: Date) async throws -> APIKey

    /// Finds the key whose secret hashes to `hash`, revoked or not.
    /// - Parameter hash: SHA-256 of a presented key.
    /// - Returns: The key, or `nil`.
    func apiKey(hash: Data) async throws -> APIKey?

    /// Records what one request used.
    /// - Parameter record: The record.
    func recordUsage(_ record: UsageRecord) async throws

    /// Sums usage per API key and model.
    /// - Returns: One row per (key, model), ordered by key then model.
    func usageSummary() async throws -> [UsageSummary]
}
