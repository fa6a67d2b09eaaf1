import Foundation
import MizanCore
import MizanDispatch
import MizanStore

/// Issues and checks the gateway's bearer secrets: client API keys (stored as hashes in an
/// `AccessStore`) and the operator's admin token. Secrets are compared in constant time and
/// never logged.
public struct Credentials: Sendable {
    /// A new API key, shown once.
    public struct IssuedKey: Sendable {
        /// The stored record.
        public var key: APIKey
        /// The secret; it cannot be shown again.
        public var secret: String
    }

    let store: any AccessStore
    /// The admin token's hash, or `nil` when the gateway has none (the admin API and the
    /// console are off).
    public let adminTokenHash: Data?
    /// Active keys by hash, so that a request does not cost a store lookup.
    let activeKeys: ExpiringCache<Data, APIKey>

    /// Creates the credential checks.
    /// - Parameters:
    ///   - store: Where API keys live.
    ///   - adminToken: The operator's token; without one the admin API refuses every call.
    ///   - keyCacheLifetime: How long a checked key is trusted without asking the store again
    ///     (1 second): a key revoked through another gateway instance stops working within it;
    ///     one revoked through this instance stops at once. `.zero` asks the store every time.
    public init(store: any AccessStore, adminToken: String?, keyCacheLifetime: Duration = .seconds(1)) {
        self.store = store
        self.adminTokenHash = adminToken.flatMap { $0.isEmpty ? nil : Secrets.hash($0) }
        self.activeKeys = ExpiringCache(lifetime: keyCacheLifetime)
    }

    /// Issues a client API key.
    /// - Parameters:
    ///   - name: A human name.
    ///   - now: The current time.
    /// - Returns: The record and the secret (shown once).
    public func issueKey(name: String, policy: KeyPolicy = KeyPolicy(), now: Date = Date()) async throws -> IssuedKey {
        let trimmed = try Names.checked(name, of: "key")
        try policy.validate()
        let secret = Secrets.generate(prefix: "mzn_sk_")
        let key = try await store.createAPIKey(
            APIKey(name: trimmed, prefix: String(secret.prefix(12)), createdAt: now, policy: policy),
            hash: Secrets.hash(secret)
        )
        return IssuedKey(key: key, secret: secret)
    }

    /// Changes a key's name or policy; the change takes effect on this instance at once and
    /// on others within the key cache's lifetime.
    /// - Parameters:
    ///   - id: The key's id.
    ///   - patch: The fields to change (`null` removes one).
    ///   - now: The current time.
    /// - Returns: The changed key.
    public func updateKey(_ id: String, _ patch: KeyPolicyPatch, now: Date = Date()) async throws -> APIKey {
        guard let current = try await store.apiKeys().first(where: { $0.id == id && $0.isActive }) else {
            throw MizanError(.notFound, "No API key with id \(SafeText.excerpt(id, limit: 64)) (a revoked key is gone).")
        }
        var name = current.name
        if case .set(let new) = patch.name { name = try Names.checked(new, of: "key") }
        let policy = patch.applied(to: current.policy)
        try policy.validate()
        let key = try await store.updateAPIKey(id, name: name, policy: policy)
        activeKeys.removeAll { $0.id == id }
        return key
    }

    /// Finds the active key a bearer secret belongs to.
    /// - Parameter secret: The presented key.
    /// - Returns: The key.
    /// - Throws: `MizanError` `unauthorized` for a missing, unknown or revoked key.
    public func authenticateClient(_ secret: String?) async throws -> APIKey {
        guard let secret, !secret.isEmpty else {
            throw MizanError(.unauthorized, "Missing API key. Send it as 'Authorization: Bearer <key>'.")
        }
        let hash = Secrets.hash(secret)
        let key: APIKey
        if let cached = activeKeys.value(for: hash) {
            key = cached
        } else {
            let read: APIKey?
            var fresh = true
            do {
                read = try await store.apiKey(hash: hash)
            } catch {
                // The store does not answer (a database restart): a key this instance read
                // lately is trusted as it was, so that its requests are served meanwhile.
                guard let stale = activeKeys.staleValue(for: hash, maxAge: Self.staleKeyAge) else { throw error }
                read = stale
                fresh = false
            }
            guard let found = read, found.isActive else {
                throw MizanError(.unauthorized, "Incorrect API key provided.")
            }
            if fresh { activeKeys.set(found, for: hash) }
            key = found
        }
        if key.policy.hasExpired(at: Date()) { throw MizanError(.expiredAPIKey, Self.expiredMessage) }
        return key
    }

    /// The id of the key an operator names: the key with that id, else the one active key with
    /// that name (`mizan keys show team-a`).
    /// - Parameter idOrName: A key's id or name.
    /// - Returns: The key's id.
    /// - Throws: `MizanError` `notFound` when no key has that id or active name, `conflict` when
    ///   several active keys share the name (use the id then).
    public func keyID(named idOrName: String) async throws -> String {
        let keys = try await store.apiKeys()
        if keys.contains(where: { $0.id == idOrName }) { return idOrName }
        let named = keys.filter { $0.isActive && $0.name == idOrName }
        switch named.count {
        case 1: return named[0].id
        case 0: throw MizanError(.notFound, "No API key with id or name \(SafeText.excerpt(idOrName, limit: 64)).")
        default:
            throw MizanError(
                .conflict, "\(named.count) active API keys are named \(SafeText.excerpt(idOrName, limit: 64)); name one by its id.")
        }
    }

    /// An active, unexpired key by id, read from the store (the key a batch runs under).
    /// - Parameter id: The key's id.
    /// - Returns: The key, or `nil` when it is unknown, revoked or expired.
    public func activeKey(id: String) async throws -> APIKey? {
        guard let key = try await store.apiKeys().first(where: { $0.id == id }), key.isActive, !key.policy.hasExpired(at: Date()) else {
            return nil
        }
        return key
    }

    /// Revokes a client API key; it stops working on this instance at once.
    /// - Parameters:
    ///   - id: The key's id.
    ///   - now: The current time.
    /// - Returns: The revoked key.
    public func revokeKey(_ id: String, now: Date = Date()) async throws -> APIKey {
        let key = try await store.revokeAPIKey(id, now: now)
        activeKeys.removeAll { $0.id == id }
        return key
    }

    /// How long a key read from the store is trusted while the store does not answer.
    static let staleKeyAge: Duration = .seconds(300)

    /// What an expired key is told (401).
    public static let expiredMessage = "This API key has expired."

    /// Checks the admin token.
    /// - Parameter token: The presented token.
    /// - Throws: `MizanError` `unauthorized` when it is missing or wrong, or when no admin token is configured.
    public func authenticateAdmin(_ token: String?) throws {
        guard let expected = adminTokenHash else {
            throw MizanError(.invalidAdminToken, "The admin API is disabled: start the gateway with an admin token.")
        }
        guard let token, Secrets.constantTimeEquals(Secrets.hash(token), expected) else {
            throw MizanError(.invalidAdminToken, "Invalid admin token.")
        }
    }

    /// The bearer secret of an `Authorization` header value.
    /// - Parameter header: The header value, e.g. `Bearer abc`.
    /// - Returns: The secret, or `nil` when the header is missing or not a bearer credential.
    public static func bearer(_ header: String?) -> String? {
        // Byte-wise: every request passes here, and Foundation's trimming is slow on Linux.
        guard let header else { return nil }
        let bytes = header.utf8
        let scheme = Array("bearer".utf8)
        guard bytes.count > scheme.count else { return nil }
        var index = bytes.startIndex
        for expected in scheme {
            let byte = bytes[index]
            guard byte == expected || byte == expected - 32 else { return nil }  // ASCII, any case
            index = bytes.index(after: index)
        }
        guard bytes[index] == UInt8(ascii: " ") || bytes[index] == UInt8(ascii: "\t") else { return nil }
        let isBlank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        guard let first = bytes[index...].firstIndex(where: { !isBlank($0) }),
            let last = bytes[first...].lastIndex(where: { !isBlank($0) })
        else { return nil }
        return String(header[first...last])
    }
}
