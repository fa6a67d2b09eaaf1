/// A fragment of HTML whose interpolated strings are escaped: `"<td>\(name)</td>" as HTML`
/// cannot inject markup whatever `name` holds. Only another ``HTML`` value (built the same
/// way) is inserted as it is, so every path from data to the page goes through ``escape(_:)``.
///
/// The console renders its pages with it instead of a template engine: the pages are checked
/// by the compiler, nothing is parsed or reflected per request, and forgetting to escape is
/// not possible by construction.
struct HTML: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    /// The markup.
    private(set) var text: String

    init(stringLiteral value: String) { text = value }
    init(stringInterpolation: StringInterpolation) { text = stringInterpolation.text }
    private init(raw: String) { text = raw }

    var description: String { text }

    /// Nothing.
    static let empty: HTML = ""

    /// Fragments one after the other.
    static func joined(_ parts: some Sequence<HTML>, separator: HTML = .empty) -> HTML {
        var text = ""
        var first = true
        for part in parts {
            if !first { text += separator.text }
            text += part.text
            first = false
        }
        return HTML(raw: text)
    }

    /// Markup written by this program (never data): the stylesheet-free SVG paths the charts
    /// compute, for one.
    static func trusted(_ markup: String) -> HTML { HTML(raw: markup) }

    /// `text` with the five characters that matter in HTML text and quoted attributes replaced
    /// by their entities.
    static func escape(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == 0x26 || $0 == 0x3C || $0 == 0x3E || $0 == 0x22 || $0 == 0x27 }) else { return text }
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count + 16)
        for character in text.unicodeScalars {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.unicodeScalars.append(character)
            }
        }
        return escaped
    }

    struct StringInterpolation: StringInterpolationProtocol {
        var text = ""

        init(literalCapacity: Int, interpolationCount: Int) {
            text.reserveCapacity(literalCapacity + interpolationCount * 16)
        }

        mutating func appendLiteral(_ literal: String) { text += literal }
        /// Text, escaped.
        mutating func appendInterpolation(_ value: String) { text += HTML.escape(value) }
        /// Text, escaped.
        mutating func appendInterpolation(_ value: Substring) { text += HTML.escape(String(value)) }
        /// A number.
        mutating func appendInterpolation(_ value: Int) { text += String(value) }
        /// Markup, as it is.
        mutating func appendInterpolation(_ value: HTML) { text += value.text }
        /// Markup fragments one after the other.
        mutating func appendInterpolation(_ values: [HTML]) { for value in values { text += value.text } }
    }
}
