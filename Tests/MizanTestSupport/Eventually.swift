/// The one way tests wait for something to happen: polls `condition` every `poll` until it
/// holds or `timeout` passes, and returns its last answer (so `#expect(try await eventually {…})`
/// fails, rather than hangs, when it never holds).
/// - Parameters:
///   - timeout: The longest to wait (10 seconds).
///   - poll: Time between checks (20 milliseconds).
///   - condition: What to wait for.
/// - Returns: Whether it held in time.
public func eventually(
    timeout: Duration = .seconds(10),
    poll: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: poll)
    }
    return try await condition()
}

/// Waits like ``eventually(timeout:poll:_:)`` and throws when the condition never held, for
/// set-up steps a test cannot go on without. The bound is wide: the whole suite runs at once on
/// two cores, where a set-up step now and then waits seconds for its turn.
/// - Parameters:
///   - what: What was waited for, for the failure message.
///   - timeout: The longest to wait (30 seconds).
///   - poll: Time between checks (2 milliseconds).
///   - condition: What to wait for.
public func waitUntil(
    _ what: String,
    timeout: Duration = .seconds(30),
    poll: Duration = .milliseconds(2),
    _ condition: () async throws -> Bool
) async throws {
    guard try await eventually(timeout: timeout, poll: poll, condition) else {
        throw WaitTimedOut(what: what, timeout: timeout)
    }
}

/// A condition a test waited for did not hold in time.
public struct WaitTimedOut: Error, CustomStringConvertible {
    /// What was waited for.
    public var what: String
    /// How long.
    public var timeout: Duration
    public var description: String { "waited \(timeout) for \(what), in vain" }

    /// Creates the error.
    public init(what: String, timeout: Duration) {
        self.what = what
        self.timeout = timeout
    }
}
