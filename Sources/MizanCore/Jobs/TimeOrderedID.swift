import Foundation

/// Generates time-ordered UUIDs (version 7): the first 48 bits are milliseconds since
/// the Unix epoch, so ids sort by creation time in text and in a database index.
public enum TimeOrderedID {
    /// Returns a new version 7 UUID for the given instant.
    /// - Parameter date: The instant whose milliseconds lead the id; defaults to now.
    /// - Returns: A UUID whose textual and byte order follow `date`.
    public static func make(at date: Date = Date()) -> UUID {
        let millis = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        let random = IDRandom.next()
        let random2 = IDRandom.next()
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

    /// The canonical lowercase text of a UUID (`0193…-7…`), as `uuidString.lowercased()` gives
    /// it, written directly: ids are formatted for every row, bind and log line, and Foundation's
    /// formatting goes through `printf`.
    /// - Parameter uuid: The UUID.
    /// - Returns: Its 36-character lowercase text.
    public static func text(_ uuid: UUID) -> String {
        withUnsafeBytes(of: uuid.uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { buffer in
                var out = 0
                for (index, byte) in bytes.enumerated() {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        buffer[out] = UInt8(ascii: "-")
                        out += 1
                    }
                    buffer[out] = hexDigit(byte >> 4)
                    buffer[out + 1] = hexDigit(byte & 0x0F)
                    out += 2
                }
                return out
            }
        }
    }

    /// Parses the canonical text of a UUID (8-4-4-4-12 hexadecimal digits, either case), as
    /// `UUID(uuidString:)` does.
    /// - Parameter text: The text.
    /// - Returns: The UUID, or `nil` when the text is not one.
    public static func parse(_ text: String) -> UUID? {
        var text = text
        return text.withUTF8 { utf8 -> UUID? in
            guard utf8.count == 36 else { return nil }
            var bytes: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            let parsed = withUnsafeMutableBytes(of: &bytes) { out -> Bool in
                var position = 0
                for index in 0..<16 {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        guard utf8[position] == UInt8(ascii: "-") else { return false }
                        position += 1
                    }
                    guard let high = hexValue(utf8[position]), let low = hexValue(utf8[position + 1]) else { return false }
                    out[index] = high << 4 | low
                    position += 2
                }
                return true
            }
            return parsed ? UUID(uuid: bytes) : nil
        }
    }

    /// Whether `lhs` sorts before `rhs` in their canonical text, compared by bytes (each byte
    /// is two hexadecimal digits, and digits sort as their values do).
    static func precedes(_ lhs: UUID, _ rhs: UUID) -> Bool {
        withUnsafeBytes(of: lhs.uuid) { left in
            withUnsafeBytes(of: rhs.uuid) { right in left.lexicographicallyPrecedes(right) }
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
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
        guard let uuid = TimeOrderedID.parse(string) else { return nil }
        self.uuid = uuid
    }

    public var description: String { TimeOrderedID.text(uuid) }

    /// Text order, which is creation order for time-ordered ids.
    public static func < (lhs: JobID, rhs: JobID) -> Bool { TimeOrderedID.precedes(lhs.uuid, rhs.uuid) }

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
        guard let uuid = TimeOrderedID.parse(string) else { return nil }
        self.uuid = uuid
    }

    public var description: String { TimeOrderedID.text(uuid) }

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
