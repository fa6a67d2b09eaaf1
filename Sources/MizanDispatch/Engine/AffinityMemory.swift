import Foundation
import MizanCore
import Synchronization

/// Which node served which conversation lately: a bounded map from a conversation's hash
/// (``ConversationKeys/whole``) to the node that answered it, forgotten after a while. Kept
/// in this process: another gateway instance sharing the store learns its own.
final class AffinityMemory: Sendable {
    private struct Entry {
        var node: NodeID
        var until: Date
    }

    private struct State {
        var entries: [UInt64: Entry] = [:]
        /// Insertion order, for dropping the oldest past the bound.
        var order: [UInt64] = []
        var head = 0
    }

    private let state = Mutex(State())
    private let lifetime: TimeInterval
    private let limit: Int

    /// - Parameters:
    ///   - lifetime: How long a conversation is remembered after its latest answer.
    ///   - limit: The most conversations remembered (the oldest go first).
    init(lifetime: Duration, limit: Int = 100_000) {
        self.lifetime = Double(lifetime.components.seconds) + Double(lifetime.components.attoseconds) / 1e18
        self.limit = max(1, limit)
    }

    /// Remembers that `node` answered the conversation `key` at `now`.
    func remember(_ key: UInt64, node: NodeID, now: Date) {
        guard lifetime > 0 else { return }
        state.withLock { state in
            if state.entries.updateValue(Entry(node: node, until: now.addingTimeInterval(lifetime)), forKey: key) == nil {
                state.order.append(key)
            }
            while state.entries.count > limit, state.head < state.order.count {
                state.entries[state.order[state.head]] = nil
                state.head += 1
            }
            // The order list is compacted once its dropped half is large.
            if state.head > 1_024, state.head * 2 > state.order.count {
                state.order.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    /// The node that answered the conversation `key`, while remembered.
    func node(for key: UInt64, now: Date) -> NodeID? {
        state.withLock { state in
            guard let entry = state.entries[key] else { return nil }
            guard entry.until > now else {
                state.entries[key] = nil
                return nil
            }
            return entry.node
        }
    }

    /// How many conversations are remembered.
    var count: Int { state.withLock { $0.entries.count } }
}
