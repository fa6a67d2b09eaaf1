import Foundation
import MizanCore
import Synchronization

/// The mock's prefix cache: the conversations it served (hashes of their prefixes and of their
/// whole requests, the last ``capacity`` of them), so that a request whose earlier turns it
/// served answers its first token sooner, as a server that keeps its prompt cache does.
///
/// A conversation's prefix is what comes before its newest exchange (``ConversationKeys``): the
/// items before the last user turn, less the answers just before it, so that the next turn of a
/// conversation, which sends every earlier item and the answer, finds the turn before. A request
/// with nothing before its newest turn has no prefix (a miss).
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

    /// The keys of a request: its conversation's (``ConversationKeys``, what the gateway's
    /// affinity follows too) with its model; none on an endpoint without conversations.
    /// - Parameters:
    ///   - endpoint: The endpoint called.
    ///   - model: The model asked for.
    ///   - body: The request's body.
    static func keys(endpoint: Endpoint, model: String, body: Data) -> Keys {
        guard let conversation = ConversationKeys(body: body, endpoint: endpoint) else { return Keys() }
        func keyed(_ hash: UInt64) -> UInt64 {
            var hasher = Hasher()
            hasher.combine(model)
            hasher.combine(hash)
            return UInt64(bitPattern: Int64(hasher.finalize()))
        }
        return Keys(prefix: conversation.prefix.map(keyed), whole: keyed(conversation.whole))
    }
}
