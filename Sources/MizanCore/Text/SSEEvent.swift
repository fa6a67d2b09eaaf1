/// One server-sent event as Mizan carries it from a provider to a client — through a route, an
/// agent, the store's stream relay and other gateway instances — as a single string: its data,
/// preceded by its name and a U+001F (unit separator) when the event has an `event:` name.
///
/// Chat and completions streams have unnamed events, so their strings are the data itself, as
/// before; Responses (`response.output_text.delta`…) and Anthropic Messages (`message_start`…)
/// name theirs. U+001F cannot appear raw in JSON, so an event's JSON data never reads as a name.
public enum SSEEvent {
    static let separator: Character = "\u{1F}"

    /// The carried form of an event.
    /// - Parameters:
    ///   - name: Its `event:` name, if any.
    ///   - data: Its data (several `data:` lines joined by newlines).
    public static func pack(name: String?, data: String) -> String {
        guard let name, !name.isEmpty else { return data }
        return name + String(separator) + data
    }

    /// An event's name and data from its carried form.
    /// - Parameter event: What ``pack(name:data:)`` made.
    public static func unpack(_ event: String) -> (name: String?, data: String) {
        // Byte-wise: every event of every stream passes here (a Character search breaks graphemes).
        let bytes = event.utf8
        guard let index = bytes.firstIndex(of: 0x1F), !bytes[..<index].contains(UInt8(ascii: "{")) else { return (nil, event) }
        return (String(event[..<index]), String(event[bytes.index(after: index)...]))
    }

    /// The data of an event in its carried form.
    public static func data(of event: String) -> String { unpack(event).data }

    /// The event as `text/event-stream` text: `event: NAME` when named, one `data:` line per
    /// line of data, and the blank line that ends it.
    /// - Parameter event: The carried form.
    public static func frame(_ event: String) -> String {
        let (name, data) = unpack(event)
        var text = ""
        text.reserveCapacity(data.utf8.count + 16 + (name?.utf8.count ?? 0))
        if let name { text += "event: \(name)\n" }
        for line in data.split(separator: "\n", omittingEmptySubsequences: false) { text += "data: \(line)\n" }
        text += "\n"
        return text
    }
}
