import MizanCore
import Synchronization

/// A one-shot wake-up: `wait()` returns once `signal()` has been called, before or after.
final class Signal: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Void, Never>)
        case signaled
    }

    private let state = Mutex(State.idle)

    /// Wakes the waiter (now or when it arrives). Idempotent.
    func signal() {
        let continuation: CheckedContinuation<Void, Never>? = state.withLock { state in
            switch state {
            case .idle:
                state = .signaled
                return nil
            case .waiting(let continuation):
                state = .signaled
                return continuation
            case .signaled:
                return nil
            }
        }
        continuation?.resume()
    }

    var isSignaled: Bool {
        state.withLock { if case .signaled = $0 { true } else { false } }
    }

    /// Waits until signalled, the task is cancelled, or `deadline` passes.
    /// - Returns: `true` when signalled, `false` on timeout or cancellation.
    func wait(until deadline: ContinuousClock.Instant) async -> Bool {
        // A cancellable timer, not `Task.sleep`: a cancelled sleep stays queued until its
        // deadline, and every waiting request would leave one behind.
        let timer = OneShotTimer(at: deadline) { [self] in signal() }
        defer { timer.cancel() }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = state.withLock { state in
                    switch state {
                    case .idle:
                        state = .waiting(continuation)
                        return false
                    case .waiting:
                        preconditionFailure("a Signal has one waiter")
                    case .signaled:
                        return true
                    }
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.signal()
        }
        return !Task.isCancelled && ContinuousClock.now < deadline
    }
}
