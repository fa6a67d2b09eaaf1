import Foundation

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
    public init(
        id: String = TimeOrderedID.text(TimeOrderedID.make()), name: String, prefix: String, createdAt: Date, revokedAt: Date? = nil
    ) {
        self.id = id
        self.name = name
        self.prefix = prefix
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    /// Whether the key may be used.
    public var isActive: Bool { revokedAt == nil }
}
