import MizanCore
import MizanProvider

extension AsyncSequence where Self: Sendable, Element == String {
    /// The same elements, ending with a ``ProviderError`` `timeout` once `limit` has passed,
    /// however long the source is between elements. Leaving the loop cancels the source.
    func bounded(by limit: Duration) -> AsyncThrowingStream<String, any Error> {
        let (stream, continuation) = AsyncThrowingStream<String, any Error>.makeStream()
        let pump = Task {
            do {
                for try await element in self { continuation.yield(element) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        let timer = OneShotTimer(after: limit) {
            continuation.finish(throwing: ProviderError(.timeout, detail: "the stream's overall deadline of \(limit) passed"))
        }
        continuation.onTermination = { _ in
            pump.cancel()
            timer.cancel()
        }
        return stream
    }
}

extension ProviderError {
    /// A short label for metrics.
    var kindLabel: String {
        switch kind {
        case .connect: "connect"
        case .timeout: "timeout"
        case .status(let code): "status_\(code)"
        case .invalidResponse: "invalid_response"
        }
    }
}
