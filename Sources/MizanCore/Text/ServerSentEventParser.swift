/// Splits a `text/event-stream` byte stream into event data, as OpenAI-compatible servers
/// send it: `data: {chunk}` lines, events ended by a blank line, `data: [DONE]` last.
///
/// Feed bytes as they arrive, in pieces of any size; complete events come out in order.
/// Comment lines (`:`) and fields other than `data` are ignored; several `data` lines of one
/// event are joined with a newline.
public struct ServerSentEventParser: Sendable {
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var lastWasCR = false

    /// Creates a parser.
    public init() {}

    /// Consumes bytes and returns the data of every event they complete.
    /// - Parameter bytes: The next bytes of the stream.
    /// - Returns: The data of each completed event, as text.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [String] where Bytes.Element == UInt8 {
        var events: [String] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") && lastWasCR {
                lastWasCR = false
                continue
            }
            lastWasCR = byte == UInt8(ascii: "\r")
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                if let event = endLine() { events.append(event) }
            } else {
                line.append(byte)
            }
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
            guard hasData else { return nil }
            let event = String(decoding: data, as: UTF8.self)
            data.removeAll(keepingCapacity: true)
            hasData = false
            return event
        }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        guard line[..<colon].elementsEqual("data".utf8) else { return nil }
        var value = colon < line.endIndex ? line[(colon + 1)...] : []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        if hasData { data.append(UInt8(ascii: "\n")) }
        data.append(contentsOf: value)
        hasData = true
        return nil
    }
}
