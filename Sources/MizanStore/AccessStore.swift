import Foundation
import MizanCore

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
    /// - Throws: `MizanError` `notFound`.
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
