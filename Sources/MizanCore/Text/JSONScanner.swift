import Foundation

/// A small scanner over JSON bytes that finds top-level members without decoding, so a
/// body can be edited in place and forwarded otherwise byte for byte.
package enum JSONScanner {
    /// Whether the first non-space byte opens an object.
    static func isObject(_ data: Data) -> Bool {
        data.first(where: { !isSpace($0) }) == UInt8(ascii: "{")
    }

    /// Replaces the value of a top-level key with a JSON string.
    /// - Returns: The edited bytes, or `nil` if the key was not found or the JSON is malformed.
    static func replacingTopLevelString(in data: Data, key: String, with value: String) -> Data? {
        let bytes = [UInt8](data)
        guard let range = valueRange(in: bytes, key: key) else { return nil }
        guard let encoded = try? JSONEncoder().encode(value) else { return nil }
        var out = Data(bytes[..<range.lowerBound])
        out.append(encoded)
        out.append(contentsOf: bytes[range.upperBound...])
        return out
    }

    /// Sets top-level members to JSON values: an existing member's value is replaced in place,
    /// a missing one appended; every other byte stays as it was.
    /// - Parameters:
    ///   - data: A JSON object.
    ///   - values: Keys (plain, without escapes) and their values as JSON text.
    /// - Returns: The edited bytes, or `nil` when `data` is not a well-formed object.
    package static func settingTopLevel(in data: Data, _ values: [(key: String, json: String)]) -> Data? {
        var bytes = [UInt8](data)
        for (key, json) in values {
            guard let members = topLevelMembers(in: bytes) else { return nil }
            if let range = members.first(where: { $0.key == key })?.value {
                bytes.replaceSubrange(range, with: Array(json.utf8))
                continue
            }
            // Appended before the closing brace (after a comma when the object has members).
            guard let close = bytes.lastIndex(of: UInt8(ascii: "}")) else { return nil }
            let member = Array("\"\(key)\":\(json)".utf8)
            bytes.replaceSubrange(close..<close, with: (members.isEmpty ? [] : Array(",".utf8)) + member)
        }
        return Data(bytes)
    }

    /// The byte range of the value of a top-level key (its first occurrence; keys are compared
    /// after unescaping, so `"mod\u0065l"` is `model`).
    static func valueRange(in bytes: [UInt8], key: String) -> Range<Int>? {
        topLevelMembers(in: bytes)?.first { $0.key == key }?.value
    }

    /// The first top-level key that occurs more than once, if any. Two values for one key are
    /// read differently by different parsers (the first wins here, the last upstream), so a
    /// body that has one is refused.
    /// - Returns: The repeated key, or `nil` when there is none or the JSON is malformed.
    static func duplicateTopLevelKey(in data: Data) -> String? {
        topLevelMembers(in: [UInt8](data)).flatMap(firstDuplicate)
    }

    /// The first key of `members` that an earlier member already named.
    static func firstDuplicate(_ members: [(key: String, value: Range<Int>)]) -> String? {
        var seen = Set<String>()
        for member in members where !seen.insert(member.key).inserted { return member.key }
        return nil
    }

    /// The top-level members of an object: each key (unescaped) and the byte range of its value.
    /// - Returns: `nil` when the bytes are not a well-formed object at the top level.
    static func topLevelMembers(in bytes: [UInt8]) -> [(key: String, value: Range<Int>)]? {
        var i = skipSpace(bytes, 0)
        guard i < bytes.count, bytes[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var members: [(key: String, value: Range<Int>)] = []
        while true {
            i = skipSpace(bytes, i)
            guard i < bytes.count else { return nil }
            if bytes[i] == UInt8(ascii: "}") { return members }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == UInt8(ascii: "\""), let keyEnd = skipString(bytes, i) else { return nil }
            guard let key = unescapedString(bytes[i..<keyEnd]) else { return nil }
            i = skipSpace(bytes, keyEnd)
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
            i = skipSpace(bytes, i + 1)
            guard let valueEnd = skipValue(bytes, i) else { return nil }
            members.append((key, i..<valueEnd))
            i = valueEnd
        }
    }

    /// The text of a JSON string literal (quotes included in `literal`).
    private static func unescapedString(_ literal: ArraySlice<UInt8>) -> String? {
        let inner = literal.dropFirst().dropLast()
        guard inner.contains(UInt8(ascii: "\\")) else { return String(decoding: inner, as: UTF8.self) }
        return try? JSONDecoder().decode(String.self, from: Data(literal))
    }

    private static func isSpace(_ b: UInt8) -> Bool {
        b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09
    }

    private static func skipSpace(_ bytes: [UInt8], _ start: Int) -> Int {
        var i = start
        while i < bytes.count, isSpace(bytes[i]) { i += 1 }
        return i
    }

    /// Returns the index just past the closing quote of the string starting at `start`.
    private static func skipString(_ bytes: [UInt8], _ start: Int) -> Int? {
        var i = start + 1
        while i < bytes.count {
            switch bytes[i] {
            case UInt8(ascii: "\\"): i += 2
            case UInt8(ascii: "\""): return i + 1
            default: i += 1
            }
        }
        return nil
    }

    /// Returns the index just past the value starting at `start`.
    static func skipValue(_ bytes: [UInt8], _ start: Int) -> Int? {
        guard start < bytes.count else { return nil }
        switch bytes[start] {
        case UInt8(ascii: "\""):
            return skipString(bytes, start)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            var depth = 0
            var i = start
            while i < bytes.count {
                switch bytes[i] {
                case UInt8(ascii: "\""):
                    guard let end = skipString(bytes, i) else { return nil }
                    i = end
                    continue
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    depth -= 1
                    if depth == 0 { return i + 1 }
                default:
                    break
                }
                i += 1
            }
            return nil
        default:
            var i = start
            while i < bytes.count, !isSpace(bytes[i]), bytes[i] != UInt8(ascii: ","), bytes[i] != UInt8(ascii: "}") {
                i += 1
            }
            return i > start ? i : nil
        }
    }
}
