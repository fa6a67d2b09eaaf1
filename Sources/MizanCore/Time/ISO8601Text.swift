import Foundation

/// ISO 8601 / RFC 3339 times as clients write them: `2027-01-01T00:00:00Z`, with an offset
/// (`+02:00`), any fraction of a second, lowercase `t` and `z`, or (where a date is enough) a
/// bare date `2027-01-01`, taken as UTC midnight.
public enum ISO8601Text {
    /// The time `text` names, or `nil`.
    /// - Parameters:
    ///   - text: The text.
    ///   - allowingDate: Whether a bare date is accepted.
    public static func date(from text: String, allowingDate: Bool = false) -> Date? {
        var text = text.uppercased()
        // Foundation reads at most milliseconds: a longer fraction is cut to three digits.
        if let dot = text.firstIndex(of: ".") {
            let digits = text[text.index(after: dot)...].prefix { $0.isNumber }
            if digits.count > 3 {
                text.replaceSubrange(text.index(after: dot)..<text.index(dot, offsetBy: digits.count + 1), with: digits.prefix(3))
            }
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = text.contains(".") ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        if let date = formatter.date(from: text) { return date }
        guard allowingDate else { return nil }
        formatter.formatOptions = [.withFullDate]
        return formatter.date(from: text)
    }

    /// A time as `2027-01-01T00:00:00.000Z`.
    public static func text(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}
