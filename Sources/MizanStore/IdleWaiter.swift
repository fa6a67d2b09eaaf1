import MizanCore
import Synchronization

/// A task waiting for a queue to be idle: resumed once, by the queue emptying or its timeout.
/// Shared by ``BatchQueue`` and the SQLite store's group commit.
package final class IdleWaiter: Sendable {
    private let continuation = Mutex<CheckedContinuation<Bool, Never>?>(nil)

    /// Resumes the waiting task (the first call only).
    /// - Parameter idle: Whether the queue is idle (false: the wait timed out).
    package func resume(_ idle: Bool) {
        continuation.withLock { $0.take() }?.resume(returning: idle)
    }

    /// Waits until the queue is idle, or `timeout` has passed.
    /// - Parameters:
    ///   - timeout: How long to wait at most.
    ///   - register: Under the queue's lock: `true` when it is idle now, else keeps the waiter
    ///     (to resume it when it empties) and answers `false`.
    ///   - unregister: Drops the waiter after a timeout.
    /// - Returns: Whether the queue is idle.
    package static func wait(
        timeout: Duration, register: (IdleWaiter) -> Bool, unregister: (IdleWaiter) -> Void
    ) async -> Bool {
        let waiter = IdleWaiter()
        var timer: OneShotTimer?
        let idle = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            waiter.continuation.withLock { $0 = continuation }
            if register(waiter) { waiter.resume(true) } else { timer = OneShotTimer(after: timeout) { waiter.resume(false) } }
        }
        timer?.cancel()
        if !idle { unregister(waiter) }
        return idle
    }
}
