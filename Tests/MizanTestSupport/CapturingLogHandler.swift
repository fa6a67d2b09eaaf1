import Logging
import NIOConcurrencyHelpers

/// A log handler that keeps every line it is given, for tests that look at what was logged.
public struct CapturingLogHandler: LogHandler {
    /// One logged event.
    public struct Entry: Sendable {
        /// Its level.
        public var level: Logger.Level
        /// Its message.
        public var message: String
        /// Its metadata, each value as text.
        public var metadata: [String: String]
    }

    /// Where the lines go (shared by copies of the handler).
    public final class Sink: Sendable {
        private let entries = NIOLockedValueBox<[Entry]>([])
        /// Creates an empty sink.
        public init() {}
        /// Every line so far.
        public var all: [Entry] { entries.withLockedValue { $0 } }
        func append(_ entry: Entry) { entries.withLockedValue { $0.append(entry) } }
    }

    /// Where this handler's lines go.
    public let sink: Sink
    public var logLevel: Logger.Level = .trace
    public var metadata: Logger.Metadata = [:]

    /// Creates a handler writing to `sink`.
    public init(sink: Sink) { self.sink = sink }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        sink.append(Entry(level: event.level, message: event.message.description, metadata: merged.mapValues { "\($0)" }))
    }
}
