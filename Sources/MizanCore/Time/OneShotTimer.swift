import Dispatch
import Foundation
import Synchronization

/// A one-shot timer that holds nothing once cancelled.
///
/// Use it instead of racing work against `Task.sleep`: a cancelled `Task.sleep` stays queued
/// in the executor, about 0.7 KB each, until its deadline passes — with a five-minute deadline
/// and thousands of requests a second that is hundreds of megabytes kept for nothing. A
/// cancelled timer is gone at once.
public final class OneShotTimer: @unchecked Sendable {
    // DispatchSource is thread-safe; it is only scheduled, resumed and cancelled.
    private let source: any DispatchSourceTimer

    /// Starts a timer that calls `handler` once, after `delay`, unless cancelled first.
    /// - Parameters:
    ///   - delay: How long to wait (negative or zero: at once).
    ///   - handler: What to do when the time has come; runs on a global queue.
    public init(after delay: Duration, _ handler: @escaping @Sendable () -> Void) {
        source = DispatchSource.makeTimerSource(queue: .global())
        let nanoseconds = max(0, min(delay.nanosecondsClamped, Int64(Int.max)))
        source.schedule(deadline: .now() + .nanoseconds(Int(nanoseconds)))
        source.setEventHandler(handler: handler)
        source.resume()
    }

    /// Starts a timer that calls `handler` once at `deadline`, unless cancelled first.
    /// - Parameters:
    ///   - deadline: When to call it.
    ///   - handler: What to do when the time has come.
    public convenience init(at deadline: ContinuousClock.Instant, _ handler: @escaping @Sendable () -> Void) {
        self.init(after: deadline - .now, handler)
    }

    /// Stops the timer; `handler` is not called after this returns (unless it had started).
    public func cancel() {
        source.cancel()
    }

    deinit {
        source.cancel()
    }
}

extension Duration {
    /// The duration in nanoseconds, saturated at `Int64`'s bounds.
    public var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return sum
    }
}

/// Runs `operation`, cancelling it once `limit` has passed, and then throws `timeoutError()`
/// (if the operation ended by throwing after the time limit). Cancelling the caller cancels
/// the operation too. Holds nothing after it returns (see ``OneShotTimer``).
/// - Parameters:
///   - limit: The longest the operation may take.
///   - timeoutError: The error thrown when the limit passed.
///   - operation: The work; it must stop when cancelled.
/// - Returns: What the operation returned.
public func withTimeLimit<T: Sendable>(
    _ limit: Duration,
    timeoutError: @escaping @Sendable () -> any Error,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let task = Task { try await operation() }
    let expired = ExpiredFlag()
    let timer = OneShotTimer(after: limit) {
        expired.set()
        task.cancel()
    }
    defer { timer.cancel() }
    return try await withTaskCancellationHandler {
        do {
            return try await task.value
        } catch {
            if expired.isSet { throw timeoutError() }
            throw error
        }
    } onCancel: {
        task.cancel()
    }
}

private final class ExpiredFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
