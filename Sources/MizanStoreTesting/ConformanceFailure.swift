/// A failed expectation of the store conformance suite.
public struct ConformanceFailure: Error, CustomStringConvertible {
    /// What was expected.
    public var message: String
    /// Where it was expected.
    public var location: String

    /// Creates a failure.
    /// - Parameters:
    ///   - message: What was expected.
    ///   - location: Where.
    public init(_ message: String, location: String) {
        self.message = message
        self.location = location
    }

    public var description: String { "\(location): \(message)" }
}

/// Throws a ``ConformanceFailure`` unless `condition` holds.
/// - Parameters:
///   - condition: The condition.
///   - message: What was expected.
/// - Throws: ``ConformanceFailure``.
public func require(
    _ condition: Bool,
    _ message: @autoclosure () -> String,
    fileID: StaticString = #fileID,
    line: UInt = #line
) throws {
    if !condition { throw ConformanceFailure(message(), location: "\(fileID):\(line)") }
}

/// Returns `value`, or throws a ``ConformanceFailure`` when it is `nil`.
/// - Parameters:
///   - value: The value.
///   - message: What was expected.
/// - Throws: ``ConformanceFailure``.
public func require<T>(
    _ value: T?,
    _ message: @autoclosure () -> String,
    fileID: StaticString = #fileID,
    line: UInt = #line
) throws -> T {
    guard let value else { throw ConformanceFailure(message(), location: "\(fileID):\(line)") }
    return value
}

/// Runs `body` and requires it to throw an error for which `matches` holds.
/// - Parameters:
///   - message: What was expected.
///   - matches: The test of the thrown error.
///   - body: The operation.
/// - Throws: ``ConformanceFailure`` when nothing or the wrong error is thrown.
public func requireThrows(
    _ message: @autoclosure () -> String,
    fileID: StaticString = #fileID,
    line: UInt = #line,
    matching matches: (any Error) -> Bool,
    _ body: () async throws -> Void
) async throws {
    do {
        try await body()
    } catch {
        if matches(error) { return }
        throw ConformanceFailure("\(message()) — got the wrong error: \(error)", location: "\(fileID):\(line)")
    }
    throw ConformanceFailure("\(message()) — nothing was thrown", location: "\(fileID):\(line)")
}
