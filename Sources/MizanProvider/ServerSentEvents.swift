import AsyncHTTPClient
import MizanCore
import NIOCore

/// The events of a streamed answer, as the server sends them: the text after `data:` of
/// each event, `[DONE]` included. Iterating pulls the body; cancelling the iterating task
/// stops it.
public struct ServerSentEvents: AsyncSequence, Sendable {
    public typealias Element = String

    let body: HTTPClientResponse.Body

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: body.makeAsyncIterator())
    }

    /// Iterates the events.
    public struct Iterator: AsyncIteratorProtocol {
        var base: HTTPClientResponse.Body.AsyncIterator
        var parser = ServerSentEventParser()
        var pending: [String] = []
        var finished = false

        public mutating func next() async throws -> String? {
            while pending.isEmpty {
                if finished { return nil }
                let buffer: ByteBuffer?
                do {
                    buffer = try await base.next()
                } catch {
                    throw ProviderClient.map(error)
                }
                if let buffer {
                    pending = parser.feed(buffer.readableBytesView)
                } else {
                    finished = true
                    if let last = parser.finish() { pending = [last] }
                }
            }
            return pending.removeFirst()
        }
    }
}
