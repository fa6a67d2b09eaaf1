import Foundation

/// A client API key as stored: never the key itself, only its hash (kept by the store).
///
/// On the wire its policy's fields sit beside the others: `{"id", "name", "prefix",
/// "createdAt", "revokedAt", "models", "limits", "budget", "expiresAt", "priority", "weight",
/// "maxQueued"}`.
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
    /// What the key may do (models, rates, concurrency, budget, expiry) and how its requests
    /// queue for nodes; empty: anything, as a standard key of weight 1.
    public var policy: KeyPolicy

    /// Creates a key record.
    /// - Parameters:
    ///   - id: The id (a new time-ordered one by default).
    ///   - name: A human name.
    ///   - prefix: The key's first characters.
    ///   - createdAt: When it was created.
    ///   - revokedAt: When it was revoked.
    ///   - policy: What the key may do.
    public init(
        id: String = TimeOrderedID.text(TimeOrderedID.make()), name: String, prefix: String, createdAt: Date, revokedAt: Date? = nil,
        policy: KeyPolicy = KeyPolicy()
    ) {
        self.id = id
        self.name = name
        self.prefix = prefix
        self.createdAt = createdAt
        self.revokedAt = revokedAt
        self.policy = policy
    }

    /// Whether the key may be used (not revoked; see ``KeyPolicy/hasExpired(at:)`` for expiry).
    public var isActive: Bool { revokedAt == nil }

    private enum CodingKeys: String, CodingKey {
        case id, name, prefix, createdAt, revokedAt
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        name = try container.decode(String.self, forKey: .name)
        prefix = try container.decode(String.self, forKey: .prefix)
        createdAt = try container.decode(Date.self, forKey: .createdAt)
        revokedAt = try container.decodeIfPresent(Date.self, forKey: .revokedAt)
        policy = try KeyPolicy(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(prefix, forKey: .prefix)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encodeIfPresent(revokedAt, forKey: .revokedAt)
        try policy.encode(to: encoder)
    }
}
