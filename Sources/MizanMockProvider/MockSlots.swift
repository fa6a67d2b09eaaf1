import Synchronization

/// The mock's generation slots: at most `capacity` requests are served at once, the others wait
/// in arrival order, as a local server with that many slots makes them.
final class MockSlots: Sendable {
    private struct State {
        var busy = 0
        var waiting: [CheckedContinuation<Void, Never>] = []
    }

    /// How many requests are served at once.
    let capacity: Int
    private let state = Mutex(State())

    /// - Parameter capacity: How many requests are served at once (at least 1).
    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// How many requests wait for a slot now.
    var waiting: Int { state.withLock { $0.waiting.count } }

    /// Waits for a slot (in arrival order) and takes it.
    func acquire() async {
        await withCheckedContinuation { continuation in
            let now: Bool = state.withLock { state in
                if state.busy < capacity {
                    state.busy += 1
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Gives a slot back: the longest waiting request takes it.
    func release() {
        let next: CheckedContinuation<Void, Never>? = state.withLock { state in
            if state.waiting.isEmpty {
                state.busy -= 1
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}
