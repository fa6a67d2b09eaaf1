import Foundation
import MizanCore
import Synchronization

/// The mock's prefix cache: the conversation prefixes it served (their hashes, the last
/// ``capacity`` of them), so that a request whose prefix it served before answers its first
/// token sooner, as a server that keeps its prompt cache does.
///
/// A conversation's prefix is what comes before its newest turn: for chat the `messages`
/// before the last user message, for Responses the `input` items before the last (with the
/// `instructions`); a request with nothing before its newest turn has no prefix (a miss).
final class PrefixCache: Sendable {
    private struct State {
        var known: Set<UInt64> = []
        var order: [UInt64] = []
    }

    /// How many prefixes it remembers (the oldest goes first).
    let capacity: Int
    private let state = Mutex(State())

    /// - Parameter capacity: How many prefixes it remembers (1,024).
    init(capacity: Int = 1024) {
        self.capacity = max(1, capacity)
    }

    /// Whether `key` was served before; it is remembered (as the newest) either way.
    /// - Parameter key: A prefix's key (``key(endpoint:model:request:)``), `nil` for none.
    /// - Returns: Whether it is a hit.
    func lookUp(_ key: UInt64?) -> Bool {
        guard let key else { return false }
        return state.withLock { state in
            if state.known.contains(key) {
                if let index = state.order.firstIndex(of: key) { state.order.remove(at: index) }
                state.order.append(key)
                return true
            }
            state.known.insert(key)
            state.order.append(key)
            if state.order.count > capacity { state.known.remove(state.order.removeFirst()) }
            return false
        }
    }

    /// The key of a request's prefix: a hash of its model and its prefix's JSON; `nil` when it
    /// has none, or on an endpoint without conversations.
    /// - Parameters:
    ///   - endpoint: The endpoint called.
    ///   - model: The model asked for.
    ///   - request: The request's JSON object.
    static func key(endpoint: Endpoint, model: String, request: [String: Any]) -> UInt64? {
        let prefix: [Any]
        switch endpoint {
        case .chatCompletions:
            guard let messages = request["messages"] as? [Any], !messages.isEmpty else { return nil }
            let lastUser = messages.lastIndex { ($0 as? [String: Any])?["role"] as? String == "user" } ?? messages.count - 1
            prefix = Array(messages[..<lastUser])
        case .responses:
            let items = (request["input"] as? [Any]).map { Array($0.dropLast()) } ?? []
            let instructions = (request["instructions"] as? String).map { [["instructions": $0] as Any] } ?? []
            prefix = instructions + items
        default:
            return nil
        }
        guard !prefix.isEmpty, let json = try? JSONSerialization.data(withJSONObject: prefix, options: [.sortedKeys]) else { return nil }
        // FNV-1a, 64 bits: stable across runs, enough for a mock.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Data(model.utf8) + [0] + json {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return hash
    }
}
