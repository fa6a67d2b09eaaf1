import Logging
import MizanCore

/// A log handler that escapes control characters in every message and metadata value before
/// its inner handler writes them, so no value from outside (a model name, a path, an
/// upstream's error text) can forge a log line or smuggle a NUL into it.
public struct SanitizingLogHandler<Inner: LogHandler>: LogHandler {
    /// The handler that writes the lines.
    public var inner: Inner

    /// Wraps a handler.
    /// - Parameter inner: The handler that writes the lines.
    public init(_ inner: Inner) {
        self.inner = inner
    }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue.mapValues(Self.sanitized) }
    }

    public var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: SafeText.escaped(key)] = newValue.map(Self.sanitized) }
    }

    public func log(event: LogEvent) {
        var clean = event
        clean.message = "\(SafeText.escaped(event.message.description))"
        if let metadata = event.metadata {
            var copy = Logger.Metadata(minimumCapacity: metadata.count)
            for (key, value) in metadata { copy[SafeText.escaped(key)] = Self.sanitized(value) }
            clean.metadata = copy
        }
        // An error's description is outside text too: it goes into the metadata, escaped.
        if let error = event.error {
            clean.error = nil
            clean.metadata = (clean.metadata ?? [:]).merging(["error": .string(SafeText.escaped("\(error)"))]) { $1 }
        }
        inner.log(event: clean)
    }

    /// A metadata value with its text escaped (arrays and dictionaries element by element).
    static func sanitized(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let text): .string(SafeText.escaped(text))
        case .stringConvertible(let convertible): .string(SafeText.escaped(convertible.description))
        case .array(let values): .array(values.map(sanitized))
        case .dictionary(let values):
            .dictionary(Dictionary(uniqueKeysWithValues: values.map { (SafeText.escaped($0.key), sanitized($0.value)) }))
        }
    }
}

/// How Mizan's executables set up logging: one line per event on standard error, every value
/// escaped (``SanitizingLogHandler``), at `level`.
public enum MizanLogging {
    /// Bootstraps swift-log for an executable (call once, at start).
    /// - Parameter level: The lowest level written.
    public static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = SanitizingLogHandler(StreamLogHandler.standardError(label: label))
            handler.logLevel = level
            return handler
        }
    }
}
