import Foundation
import MizanCore
import MizanStore
import Synchronization

/// The checks every ``DispatchStore`` must pass. Run them from a test target with the
/// same code for every store:
///
/// ```swift
/// @Test(arguments: StoreConformance.checks)
/// func conformance(_ check: StoreConformance.Check) async throws {
///     try await check.run(on: InMemoryStore())
/// }
/// ```
///
/// Each check expects a fresh, empty store.
public enum StoreConformance {
    /// One named check of a ``DispatchStore``.
    public typealias Check = ConformanceCheck<any DispatchStore>

    /// Every check.
    public static let checks: [Check] =
        transitionChecks + fencingChecks + batchChecks + recoveryChecks + registryChecks + concurrencyChecks + schedulingChecks
}

/// One named check of a conformance suite, run against a fresh store of kind `Store`.
public struct ConformanceCheck<Store: Sendable>: Sendable, CustomStringConvertible {
    /// The check's name.
    public let name: String
    let body: @Sendable (Store) async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable (Store) async throws -> Void) {
        self.name = name
        self.body = body
    }

    /// Runs the check against an empty store.
    /// - Parameter store: A fresh store.
    /// - Throws: ``ConformanceFailure`` or the store's own error.
    public func run(on store: Store) async throws {
        try await body(store)
    }

    public var description: String { name }
}

/// Fixtures shared by the checks.
enum Fixture {
    /// A fixed instant so checks do not depend on the wall clock.
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    static func hash(_ label: String = UUID().uuidString) -> Data {
        Data(label.utf8) + Data((0..<16).map { _ in UInt8.random(in: 0...255) })
    }

    static func job(
        model: String = "m1",
        createdAt: Double = 0,
        deadline: Double = 300,
        maxAttempts: Int = 3,
        priority: Int = 0,
        idempotencyKey: String? = nil
    ) -> Job {
        Job(
            id: JobID(at: at(createdAt)),
            requestID: "req-\(UUID().uuidString.prefix(8))",
            model: model,
            body: Data(#"{"model":"\#(model)","messages":[{"role":"user","content":"hi"}],"temperature":0.2}"#.utf8),
            deadline: at(deadline),
            maxAttempts: maxAttempts,
            priority: priority,
            idempotencyKey: idempotencyKey,
            apiKeyID: "key-1",
            now: at(createdAt)
        )
    }

    /// Creates and registers an active node.
    static func node(
        _ store: any DispatchStore,
        models: [String] = ["m1"],
        maxConcurrency: Int = 4,
        at seconds: Double = 0
    ) async throws -> Node {
        let registration = hash("reg")
        _ = try await store.createNode(
            Node(name: "node-\(UUID().uuidString.prefix(6))", createdAt: at(seconds)),
            registrationTokenHash: registration
        )
        return try await store.registerNode(
            registrationTokenHash: registration,
            nodeTokenHash: hash("tok"),
            report: NodeReport(models: models, maxConcurrency: maxConcurrency),
            now: at(seconds)
        )
    }

    static let success = JobCompletion.succeeded(
        result: Data(#"{"id":"c1","object":"chat.completion","choices":[]}"#.utf8),
        usage: TokenUsage(promptTokens: 7, completionTokens: 11, source: .provider)
    )

    static func isCode(_ code: MizanError.Code) -> (any Error) -> Bool {
        { ($0 as? MizanError)?.code == code }
    }
}

/// Collects store events for checks.
final class EventRecorder: Sendable {
    private let events = Mutex<[StoreEvent]>([])

    init(_ store: any DispatchStore) {
        store.addEventHandler { [self] event in self.events.withLock { $0.append(event) } }
    }

    var all: [StoreEvent] { events.withLock { $0 } }

    /// Waits (up to two seconds) until `predicate` holds for the recorded events;
    /// stores backed by a database deliver events asynchronously.
    func wait(for what: String, _ predicate: ([StoreEvent]) -> Bool) async throws {
        for _ in 0..<400 {
            if predicate(all) { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw ConformanceFailure("expected event \(what); got \(all)", location: "EventRecorder")
    }
}
