import Foundation

/// Generates time-ordered UUIDs (version 7): the first 48 bits are milliseconds since
/// the Unix epoch, so ids sort by creation time in text and in a database index.
public enum TimeOrderedID {
    /// Returns a new version 7 UUID for the given instant.
    /// - Parameter date: The instant whose milliseconds lead the id; defaults to now.
    /// - Returns: A UUID whose textual and byte order follow `date`.
    public static func make(at date: Date = Date()) -> UUID {
        let millis = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        var rng = SystemRandomNumberGenerator()
        let random = rng.next() as UInt64
        let random2 = rng.next() as UInt64
        var bytes: [UInt8] = Array(repeating: 0, count: 16)
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: millis >> UInt64(8 * (5 - i))) }
        for i in 6..<8 { bytes[i] = UInt8(truncatingIfNeeded: random >> UInt64(8 * (i - 6))) }
        for i in 8..<16 { bytes[i] = UInt8(truncatingIfNeeded: random2 >> UInt64(8 * (i - 8))) }
        bytes[6] = (bytes[6] & 0x0F) | 0x70  // version 7
        bytes[8] = (bytes[8] & 0x3F) | 0x80  // RFC 4122 variant
        return UUID(
            uuid: (
                bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]
            ))
    }
}

/// The identifier of a dispatch job: a time-ordered UUID.
public struct JobID: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    /// The underlying UUID.
    public var uuid: UUID

    /// Wraps an existing UUID.
    /// - Parameter uuid: The UUID to wrap.
    public init(_ uuid: UUID) { self.uuid = uuid }

    /// Creates a new time-ordered job id.
    /// - Parameter date: The creation instant; defaults to now.
    public init(at date: Date = Date()) { self.uuid = TimeOrderedID.make(at: date) }

    /// Parses the canonical text form of a UUID.
    /// - Parameter string: A UUID string such as `0193…-7…`.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }

    public var description: String { uuid.uuidString.lowercased() }

    public static func < (lhs: JobID, rhs: JobID) -> Bool { lhs.description < rhs.description }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = JobID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid job id"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// The identifier of an agent node: a time-ordered UUID.
public struct NodeID: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The underlying UUID.
    public var uuid: UUID

    /// Wraps an existing UUID.
    /// - Parameter uuid: The UUID to wrap.
    public init(_ uuid: UUID) { self.uuid = uuid }

    /// Creates a new time-ordered node id.
    /// - Parameter date: The creation instant; defaults to now.
    public init(at date: Date = Date()) { self.uuid = TimeOrderedID.make(at: date) }

    /// Parses the canonical text form of a UUID.
    /// - Parameter string: A UUID string.
    public init?(_ string: String) {
        guard let uuid = UUID(uuidString: string) else { return nil }
        self.uuid = uuid
    }

    public var description: String { uuid.uuidString.lowercased() }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = NodeID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "invalid node id"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
