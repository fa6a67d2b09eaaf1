import Hummingbird
import Logging
import ServiceLifecycle

/// Runs an application on a free loopback port for the duration of `body`, then shuts it down
/// gracefully: it stops accepting connections first, so that no connection arrives while it is
/// going away (a connection accepted mid-teardown trips NIO's checks). The shutdown is bounded:
/// after 10 seconds the server is cancelled.
public func withServer<App: ApplicationProtocol, T: Sendable>(
    _ make: (@escaping @Sendable (Int) async -> Void) -> App,
    _ body: (Int) async throws -> T
) async throws -> T {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    let app = make { port in continuation.yield(port) }
    let group = ServiceGroup(
        configuration: .init(services: [.init(service: app)], gracefulShutdownSignals: [], logger: Logger(label: "mizan.tests.server"))
    )
    let running = Task { try await group.run() }
    let result: Result<T, any Error>
    var iterator = ports.makeAsyncIterator()
    if let port = await iterator.next() {
        do {
            result = .success(try await body(port))
        } catch {
            result = .failure(error)
        }
    } else {
        result = .failure(CancellationError())
    }
    await group.triggerGracefulShutdown()
    let deadline = Task {
        try await Task.sleep(for: .seconds(10))
        running.cancel()
    }
    _ = await running.result
    deadline.cancel()
    return try result.get()
}
