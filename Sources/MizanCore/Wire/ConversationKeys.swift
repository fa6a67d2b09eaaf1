import Foundation

/// What the scheduler knows of a conversation, from a request's body: the hash of the turns
/// before the one asked now (which node served them?) and the hash of every turn sent (the
/// next turn's ``prefix``). Chat completions and Messages hash `messages`, Responses its
/// `input` items; each item as JSON with sorted keys, so that spacing and key order do not
/// matter. Other requests have none.
///
/// The next turn of a conversation sends the same items, the answer and a new user turn: its
/// prefix is the items before its last user turn and the answers just before it, which is
/// every item the turn before sent.
public struct ConversationKeys: Sendable, Hashable {
    /// The items before the last user turn and the answers just before it; `nil` for a first turn.
    public var prefix: UInt64?
    /// Every item sent.
    public var whole: UInt64

    /// The keys of a request body, or `nil` when it has no conversation to follow.
    /// - Parameters:
    ///   - body: The request's JSON body.
    ///   - endpoint: The endpoint called.
    public init?(body: Data, endpoint: Endpoint) {
        let field: String
        switch endpoint {
        case .chatCompletions, .messages: field = "messages"
        case .responses: field = "input"
        default: return nil
        }
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
            let items = object[field] as? [[String: Any]], !items.isEmpty
        else { return nil }
        var hashes: [UInt64] = []
        hashes.reserveCapacity(items.count)
        var running = FNV1a()
        // For Messages, the system prompt is a field of its own: it starts the hash.
        if endpoint == .messages, let system = object["system"], let data = Self.canonical(system) { running.add(data) }
        for item in items {
            guard let data = Self.canonical(item) else { return nil }
            running.add(data)
            hashes.append(running.value)
        }
        whole = hashes[hashes.count - 1]
        // The last user turn, and the answers just before it, are left out of the prefix.
        var end = items.count
        if let lastUser = items.lastIndex(where: { ($0["role"] as? String) == "user" }) { end = lastUser }
        while end > 0, (items[end - 1]["role"] as? String) == "assistant" { end -= 1 }
        prefix = end > 0 ? hashes[end - 1] : nil
    }

    private static func canonical(_ value: Any) -> Data? {
        if let text = value as? String { return Data(text.utf8) }
        guard JSONSerialization.isValidJSONObject(value) else { return nil }
        return try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])
    }
}

/// FNV-1a, 64 bits: stable across processes (the standard library's hash is seeded per process).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ data: Data) {
        for byte in data {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
        // Items are separated, so that ["ab"] and ["a", "b"] differ.
        value ^= 0xff
        value = value &* 0x0000_0100_0000_01b3
    }
}
