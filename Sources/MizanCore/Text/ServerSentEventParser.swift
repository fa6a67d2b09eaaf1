/// Splits a `text/event-stream` byte stream into events, as OpenAI-compatible and Anthropic
/// servers send them: `event: name` (optional) and `data: {chunk}` lines, events ended by a
/// blank line, `data: [DONE]` last on OpenAI's chat and completions streams.
///
/// Feed bytes as they arrive, in pieces of any size; complete events come out in order, each in
/// ``SSEEvent``'s carried form (its data, behind its name when it has one other than the
/// default, `message`). Comment lines (`:`)
/// and fields other than `event` and `data` are ignored; several `data` lines of one event are
/// joined with a newline; an event without data is not dispatched.
///
/// An event (or a line) longer than `maxEventBytes` is not kept: the parser drops what it
/// holds and says so in ``tooLarge``, and the caller ends the stream — a peer that sends one
/// endless event cannot make it grow without bound.
public struct ServerSentEventParser: Sendable {
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var name: [UInt8] = []
    private var lastWasCR = false
    /// The longest event (its data and the line being read) kept.
    public let maxEventBytes: Int
    /// Whether an event or line longer than ``maxEventBytes`` arrived (it was dropped).
    public private(set) var tooLarge = false

    /// Creates a parser.
    /// - Parameter maxEventBytes: The longest event kept (unbounded by default).
    public init(maxEventBytes: Int = .max) {
        self.maxEventBytes = max(1, maxEventBytes)
    }

    /// Consumes bytes and returns the data of every event they complete.
    /// - Parameter bytes: The next bytes of the stream.
    /// - Returns: The data of each completed event, as text.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [String] where Bytes.Element == UInt8 {
        // Line by line, each line's bytes appended at once (most pieces hold whole lines).
        let handled: [String]? = bytes.withContiguousStorageIfAvailable { feedContiguous($0) }
        if let handled { return handled }
        return Array(bytes).withUnsafeBufferPointer { feedContiguous($0) }
    }

    private mutating func feedContiguous(_ buffer: UnsafeBufferPointer<UInt8>) -> [String] {
        var events: [String] = []
        var i = 0
        let count = buffer.count
        while i < count {
            let byte = buffer[i]
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                let isLFAfterCR = byte == UInt8(ascii: "\n") && lastWasCR
                lastWasCR = byte == UInt8(ascii: "\r")
                i += 1
                if isLFAfterCR { continue }
                if let event = endLine() { events.append(event) }
                continue
            }
            lastWasCR = false
            var end = i + 1
            while end < count, buffer[end] != UInt8(ascii: "\n"), buffer[end] != UInt8(ascii: "\r") { end += 1 }
            line.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[i..<end]))
            if line.count + data.count > maxEventBytes {
                tooLarge = true
                line.removeAll()
                data.removeAll()
                hasData = false
                return events
            }
            i = end
        }
        return events
    }

    /// Ends the stream: an event not closed by a blank line is returned if it has data.
    /// - Returns: The data of the last event, if any.
    public mutating func finish() -> String? {
        if !line.isEmpty { _ = endLine() }
        return endLine()
    }

    private mutating func endLine() -> String? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            guard hasData else {
                name.removeAll(keepingCapacity: true)
                return nil
            }
            // `message` is the type of an event without a name (the SSE standard's default).
            let named = name.isEmpty || name.elementsEqual("message".utf8) ? nil : String(decoding: name, as: UTF8.self)
            let event = SSEEvent.pack(name: named, data: String(decoding: data, as: UTF8.self))
            data.removeAll(keepingCapacity: true)
            name.removeAll(keepingCapacity: true)
            hasData = false
            return event
        }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        var value = colon < line.endIndex ? line[(colon + 1)...] : []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        if line[..<colon].elementsEqual("event".utf8) {
            // A name is bounded and printable: it reaches logs and the store's relay.
            name = Array(value.prefix(128).filter { $0 >= 0x20 && $0 != 0x7F })
            return nil
        }
        guard line[..<colon].elementsEqual("data".utf8) else { return nil }
        if hasData { data.append(UInt8(ascii: "\n")) }
        data.append(contentsOf: value)
        hasData = true
        return nil
    }
}
