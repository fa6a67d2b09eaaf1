import Foundation
import MizanCore
import Synchronization

/// The mock's prefix cache: the conversations it served (hashes of their prefixes and of their
/// whole requests, the last ``capacity`` of them), so that a request whose earlier turns it
/// served answers its first token sooner, as a server that keeps its prompt cache does.
///
/// A conversation's prefix is what comes before its newest exchange: for chat the `messages`
/// before the last user message, less the answers just before it (so that the next turn of a
/// conversation, which sends every earlier message and the answer, finds the turn before); for
/// Responses the `input` items before the last (with the `instructions`). A request with
/// nothing before its newest turn has no prefix (a miss).
final class PrefixCache: Sendable {
    private struct State {
        var known: Set<UInt64> = []
        var order: [UInt64] = []

        mutating func remember(_ key: UInt64, capacity: Int) {
            if known.contains(key) {
                if let index = order.firstIndex(of: key) { order.remove(at: index) }
            } else {
                known.insert(key)
            }
            order.append(key)
            if order.count > capacity { known.remove(order.removeFirst()) }
        }
    }

    /// A request's keys: its prefix (looked up) and the whole of it (what a later turn's prefix is).
    struct Keys {
        var prefix: UInt64?
        var whole: UInt64?
    }

    /// How many keys it remembers (the oldest goes first).
    let capacity: Int
    private let state = Mutex(State())

    /// - Parameter capacity: How many keys it remembers (1,024).
    init(capacity: Int = 1024) {
        self.capacity = max(1, capacity)
    }

    /// Whether the request's prefix was served before; its prefix and its whole are remembered
    /// (as the newest) either way.
    /// - Parameter keys: The request's keys (``keys(endpoint:model:request:)``).
    /// - Returns: Whether it is a hit.
    func lookUp(_ keys: Keys) -> Bool {
        state.withLock { state in
            let hit = keys.prefix.map { state.known.contains($0) } ?? false
            if let prefix = keys.prefix { state.remember(prefix, capacity: capacity) }
            if let whole = keys.whole { state.remember(whole, capacity: capacity) }
            return hit
        }
    }

    /// The keys of a request: hashes of its model and its prefix's JSON, and of its model and
    /// its whole conversation; `nil` each when there is none, or on an endpoint without conversations.
    /// - Parameters:
    ///   - endpoint: The endpoint called.
    ///   - model: The model asked for.
    ///   - request: The request's JSON object.
    static func keys(endpoint: Endpoint, model: String, request: [String: Any]) -> Keys {
        let prefix: [Any]
        let whole: [Any]
        switch endpoint {
        case .chatCompletions:
            guard let messages = request["messages"] as? [Any], !messages.isEmpty else { return Keys() }
            let role = { (index: Int) in (messages[index] as? [String: Any])?["role"] as? String }
            var end = messages.indices.last { role($0) == "user" } ?? messages.count - 1
            while end > 0, role(end - 1) == "assistant" { end -= 1 }
            prefix = Array(messages[..<end])
            whole = messages
        case .responses:
            let input = request["input"] as? [Any] ?? []
            let instructions = (request["instructions"] as? String).map { [["instructions": $0] as Any] } ?? []
            prefix = instructions + input.dropLast()
            whole = instructions + input
        default:
            return Keys()
        }
        return Keys(prefix: hash(model, prefix), whole: hash(model, whole))
    }

    private static func hash(_ model: String, _ items: [Any]) -> UInt64? {
        guard !items.isEmpty, let json = try? JSONSerialization.data(withJSONObject: items, options: [.sortedKeys]) else { return nil }
        // FNV-1a, 64 bits: stable across runs, enough for a mock.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Data(model.utf8) + [0] + json {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
