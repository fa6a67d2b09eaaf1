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

    /// A time as `2027-01-01T00:00:00.000Z` (UTC, rounded to the millisecond).
    ///
    /// Written by arithmetic on the calendar (the proleptic Gregorian one, as ISO 8601's): a
    /// Foundation date formatter costs a fraction of a millisecond to make on Linux, and pages
    /// and listings write hundreds of times.
    public static func text(_ date: Date) -> String {
        // Rounded to the millisecond as Foundation's formatter does, from the date's own
        // reference (2001): adding the 1970 offset first would lose precision far from it.
        let milliseconds = Int64((date.timeIntervalSinceReferenceDate * 1000).rounded()) + 978_307_200_000
        let (seconds, millisecond) = floorDivision(milliseconds, 1000)
        let (days, secondOfDay) = floorDivision(seconds, 86_400)
        let (year, month, day) = civil(fromDaysSince1970: days)
        var text = ""
        text.reserveCapacity(24)
        func append(_ value: Int64, width: Int) {
            let digits = String(value)
            if digits.count < width { text += String(repeating: "0", count: width - digits.count) }
            text += digits
        }
        if year < 0 {
            text += "-"
            append(-year, width: 4)
        } else {
            append(year, width: 4)
        }
        text += "-"
        append(month, width: 2)
        text += "-"
        append(day, width: 2)
        text += "T"
        append(secondOfDay / 3600, width: 2)
        text += ":"
        append(secondOfDay / 60 % 60, width: 2)
        text += ":"
        append(secondOfDay % 60, width: 2)
        text += "."
        append(millisecond, width: 3)
        text += "Z"
        return text
    }

    /// The quotient rounded down and the (non-negative) remainder.
    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (Int64, Int64) {
        let quotient = value >= 0 ? value / divisor : -((-value + divisor - 1) / divisor)
        return (quotient, value - quotient * divisor)
    }

    /// The year, month and day of a count of days since 1970-01-01 (H. Hinnant's algorithm).
    static func civil(fromDaysSince1970 days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// The days since 1970-01-01 of a date of the proleptic Gregorian calendar (the inverse of
    /// ``civil(fromDaysSince1970:)``).
    static func daysSince1970(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The days of a month (1–12) of a year.
    static func daysIn(month: Int64, year: Int64) -> Int64 {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }
}
