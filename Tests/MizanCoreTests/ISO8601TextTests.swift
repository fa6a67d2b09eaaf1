import Foundation
import MizanCore
import Testing

@Suite("ISO 8601 text")
struct ISO8601TextTests {
    /// Foundation's formatter, the reference the arithmetic must agree with.
    static func reference(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    @Test("times are written as Foundation writes them, to the millisecond")
    func agreesWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        var dates = [
            Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 951_782_400),  // 2000-02-29
            Date(timeIntervalSince1970: 4_107_542_399.999),  // 2100-02-28T23:59:59.999
            Date(timeIntervalSince1970: -1), Date(timeIntervalSince1970: -86_400 * 365 * 70 + 0.5),
            Date(timeIntervalSince1970: 253_402_300_799),  // 9999-12-31T23:59:59
            // Fractions below a millisecond round to the nearest one.
            Date(timeIntervalSince1970: 0.0009), Date(timeIntervalSince1970: 0.0004), Date(timeIntervalSince1970: 1.9996),
            Date(timeIntervalSince1970: -0.0004), Date(timeIntervalSince1970: -0.0006),
        ]
        for _ in 0..<2000 {
            // Whole milliseconds, so that rounding below a millisecond plays no part.
            let milliseconds = Int64.random(in: -2_208_988_800_000...32_503_680_000_000, using: &generator)
            dates.append(Date(timeIntervalSince1970: Double(milliseconds) / 1000))
        }
        for date in dates {
            #expect(ISO8601Text.text(date) == Self.reference(date), "\(date.timeIntervalSince1970)")
        }
    }

    @Test("a written time reads back")
    func roundTrips() {
        let date = Date(timeIntervalSince1970: 1_796_515_200.25)
        #expect(ISO8601Text.text(date) == "2026-12-06T00:00:00.250Z")
        #expect(ISO8601Text.date(from: ISO8601Text.text(date)) == date)
    }
}
