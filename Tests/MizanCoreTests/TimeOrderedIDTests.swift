import Foundation
import MizanCore
import Testing

@Suite("Time-ordered ids: text, parsing and order as Foundation's")
struct TimeOrderedIDTests {
    /// Random UUIDs, time-ordered ones and the extremes.
    static let samples: [UUID] =
        (0..<500).map { _ in UUID() } + (0..<500).map { _ in TimeOrderedID.make() }
        + [
            UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
            UUID(uuid: (255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255)),
            UUID(uuid: (9, 10, 0x9f, 0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
        ]

    @Test("the text is uuidString lowercased, and parses back from either case")
    func text() {
        for uuid in Self.samples {
            let text = TimeOrderedID.text(uuid)
            #expect(text == uuid.uuidString.lowercased())
            #expect(TimeOrderedID.parse(text) == uuid)
            #expect(TimeOrderedID.parse(uuid.uuidString) == uuid)
            #expect(JobID(text)?.description == text)
            #expect(NodeID(uuid.uuidString)?.description == text)
        }
    }

    @Test("what Foundation refuses is refused, and text it would scan leniently")
    func refusals() {
        let good = TimeOrderedID.text(TimeOrderedID.make())
        var bad = [
            "", "not-a-uuid", String(good.dropLast()), good + "0", good.replacingOccurrences(of: "-", with: ""),
            "{" + good.dropFirst().dropLast() + "}", String(good.prefix(35)) + "g",
        ]
        // Digits in the dashes' places; a two-byte character that keeps the byte count at 36.
        bad.append(good.replacingOccurrences(of: "-", with: "0"))
        bad.append(String(good.prefix(8)) + "é" + good.dropFirst(10))
        for text in bad {
            #expect(UUID(uuidString: text) == nil, "Foundation refuses \(text)")
            #expect(TimeOrderedID.parse(text) == nil, "refused: \(text)")
        }
        // Stricter than Foundation's scanner, which takes a space for a leading digit.
        let spaced = " " + good.dropFirst()
        #expect(UUID(uuidString: spaced) != nil)
        #expect(TimeOrderedID.parse(spaced) == nil)
    }

    @Test("job ids sort as their text does, which is creation order")
    func order() {
        let ids = Self.samples.map(JobID.init)
        let byText = ids.sorted { $0.description < $1.description }
        #expect(ids.sorted() == byText)
        var earlier = JobID(at: Date(timeIntervalSince1970: 1_700_000_000))
        for step in 1...50 {
            let later = JobID(at: Date(timeIntervalSince1970: 1_700_000_000 + Double(step)))
            #expect(earlier < later)
            #expect(!(later < earlier))
            earlier = later
        }
    }

    @Test func idBitsNeverRepeatAcrossTasksAndLookRandom() async {
        // Eight tasks draw 25,000 each at once: no value twice, and every bit set about half the time.
        let draws = await withTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<8 { group.addTask { (0..<25_000).map { _ in IDRandom.next() } } }
            return await group.reduce(into: [UInt64]()) { $0 += $1 }
        }
        #expect(Set(draws).count == draws.count, "no repeats among \(draws.count)")
        for bit in 0..<64 {
            let ones = draws.reduce(0) { $0 + Int(($1 >> UInt64(bit)) & 1) }
            #expect(abs(Double(ones) / Double(draws.count) - 0.5) < 0.02, "bit \(bit) set in \(ones) of \(draws.count)")
        }
    }
}
