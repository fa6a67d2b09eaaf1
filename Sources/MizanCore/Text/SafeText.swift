/// Text that came from outside (a model name, a header, an upstream's words) made fit for a
/// log line or an error message: control characters escaped, so no value can forge a line,
/// and long values cut.
public enum SafeText {
    /// `value` with every control character (C0, DEL, C1, and the Unicode line and paragraph
    /// separators) written as an escape: `\n`, `\t`, `\r`, `\0`, else `\u{…}`. Backslashes
    /// are doubled, so an escape in the output always comes from this function.
    /// - Parameter value: Any text.
    /// - Returns: The text on one line.
    public static func escaped(_ value: String) -> String {
        guard value.unicodeScalars.contains(where: needsEscape) else { return value }
        var out = String.UnicodeScalarView()
        for scalar in value.unicodeScalars {
            guard needsEscape(scalar) else {
                out.append(scalar)
                continue
            }
            let escape: String
            switch scalar {
            case "\\": escape = "\\\\"
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            case "\0": escape = "\\0"
            default: escape = "\\u{\(String(scalar.value, radix: 16))}"
            }
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    /// ``escaped(_:)`` of at most the first `limit` characters of `value`, with `…` when cut.
    /// - Parameters:
    ///   - value: Any text.
    ///   - limit: The most characters kept (200).
    /// - Returns: A short, single-line excerpt.
    public static func excerpt(_ value: String, limit: Int = 200) -> String {
        let cut = value.unicodeScalars.count > limit
        let kept = cut ? String(String.UnicodeScalarView(value.unicodeScalars.prefix(limit))) : value
        return escaped(kept) + (cut ? "…" : "")
    }

    /// Whether `text` holds a C0 or C1 control character or DEL (names must not).
    /// - Parameter text: Any text.
    public static func containsControlCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains(where: isControl)
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        isControl(scalar) || scalar == "\\" || scalar.value == 0x2028 || scalar.value == 0x2029
    }
}
