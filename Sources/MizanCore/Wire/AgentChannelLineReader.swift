import Foundation

/// Reads the frames of an agent-served request's hot path; `nil` for anything else.
enum ChannelLineReader {
    typealias Members = [(key: String, value: Range<Int>)]

    static func read(_ bytes: [UInt8]) -> AgentWire.ChannelFrame? {
        guard let members = object(bytes, 0..<bytes.count, whole: true) else { return nil }
        guard let opRange = members.first(where: { $0.key == "op" })?.value, let op = string(bytes, opRange),
            let operation = AgentWire.ChannelFrame.Operation(rawValue: op),
            let idRange = members.first(where: { $0.key == "id" })?.value, let id = int(bytes, idRange)
        else { return nil }
        var frame = AgentWire.ChannelFrame(operation, id: id)
        switch operation {
        case .lease:
            guard members.count == 3, let range = value("lease", members), let lease = object(bytes, range),
                keys(lease, allowed: ["limit", "waitSeconds"]), let limit = value("limit", lease).flatMap({ int(bytes, $0) })
            else { return nil }
            var wait: Double?
            if let range = value("waitSeconds", lease) {
                guard let seconds = double(bytes, range) else { return nil }
                wait = seconds
            }
            frame.lease = AgentWire.LeaseRequest(limit: limit, waitSeconds: wait)
        case .complete:
            guard members.count == 4, let jobID = value("jobID", members).flatMap({ self.jobID(bytes, $0) }),
                let range = value("complete", members), let complete = object(bytes, range),
                keys(complete, allowed: ["attempt", "result", "usage"]),
                let attempt = value("attempt", complete).flatMap({ int(bytes, $0) }),
                let result = value("result", complete).flatMap({ base64(bytes, $0) })
            else { return nil }
            var usage: TokenUsage?
            if let range = value("usage", complete) {
                guard let read = tokenUsage(bytes, range) else { return nil }
                usage = read
            }
            frame.jobID = jobID
            frame.complete = AgentWire.CompleteRequest(attempt: attempt, result: result, usage: usage)
        case .reply:
            guard keys(members, allowed: ["op", "id", "status", "leased", "outcome"]) else { return nil }
            if let range = value("status", members) {
                guard let status = int(bytes, range) else { return nil }
                frame.status = status
            }
            if let range = value("leased", members) {
                guard let leased = object(bytes, range), keys(leased, allowed: ["jobs"]), let jobsRange = value("jobs", leased),
                    let elements = array(bytes, jobsRange)
                else { return nil }
                var jobs: [AgentWire.Assignment] = []
                for element in elements {
                    guard let job = assignment(bytes, element) else { return nil }
                    jobs.append(job)
                }
                frame.leased = AgentWire.LeaseResponse(jobs: jobs)
            }
            if let range = value("outcome", members) {
                guard let outcome = object(bytes, range), keys(outcome, allowed: ["jobID", "state"]),
                    let jobID = value("jobID", outcome).flatMap({ self.jobID(bytes, $0) })
                else { return nil }
                var state: JobState?
                if let range = value("state", outcome) {
                    guard let read = string(bytes, range).flatMap(JobState.init(rawValue:)) else { return nil }
                    state = read
                }
                frame.outcome = AgentWire.ReportOutcome(jobID: jobID, state: state, error: nil)
            }
        default:
            return nil
        }
        return frame
    }

    static func value(_ key: String, _ members: Members) -> Range<Int>? {
        members.first { $0.key == key }?.value
    }

    /// Whether every key is one of `allowed`, and none is there twice.
    private static func keys(_ members: Members, allowed: Set<String>) -> Bool {
        var seen = Set<String>()
        return members.allSatisfy { allowed.contains($0.key) && seen.insert($0.key).inserted }
    }

    /// The members of the object at `range` (strictly: commas between members only, nothing
    /// after it when `whole`), each key once.
    static func object(_ bytes: [UInt8], _ range: Range<Int>, whole: Bool = false) -> Members? {
        var i = skipSpace(bytes, range.lowerBound, range.upperBound)
        guard i < range.upperBound, bytes[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var members: Members = []
        var seen = Set<String>()
        i = skipSpace(bytes, i, range.upperBound)
        if i < range.upperBound, bytes[i] == UInt8(ascii: "}") {
            return rest(bytes, i + 1, range, whole) ? members : nil
        }
        while i < range.upperBound {
            guard bytes[i] == UInt8(ascii: "\""), let keyEnd = plainStringEnd(bytes, i, range.upperBound) else { return nil }
            let key = String(decoding: bytes[(i + 1)..<(keyEnd - 1)], as: UTF8.self)
            guard seen.insert(key).inserted else { return nil }
            i = skipSpace(bytes, keyEnd, range.upperBound)
            guard i < range.upperBound, bytes[i] == UInt8(ascii: ":") else { return nil }
            i = skipSpace(bytes, i + 1, range.upperBound)
            guard let valueEnd = valueEnd(bytes, i, range.upperBound) else { return nil }
            members.append((key, i..<valueEnd))
            i = skipSpace(bytes, valueEnd, range.upperBound)
            guard i < range.upperBound else { return nil }
            if bytes[i] == UInt8(ascii: "}") { return rest(bytes, i + 1, range, whole) ? members : nil }
            guard bytes[i] == UInt8(ascii: ",") else { return nil }
            i = skipSpace(bytes, i + 1, range.upperBound)
        }
        return nil
    }

    private static func rest(_ bytes: [UInt8], _ i: Int, _ range: Range<Int>, _ whole: Bool) -> Bool {
        skipSpace(bytes, i, range.upperBound) == range.upperBound || !whole && i == range.upperBound
    }

    /// The elements of the array at `range`: objects only.
    static func array(_ bytes: [UInt8], _ range: Range<Int>) -> [Range<Int>]? {
        var i = skipSpace(bytes, range.lowerBound, range.upperBound)
        guard i < range.upperBound, bytes[i] == UInt8(ascii: "[") else { return nil }
        i = skipSpace(bytes, i + 1, range.upperBound)
        var elements: [Range<Int>] = []
        if i < range.upperBound, bytes[i] == UInt8(ascii: "]") { return elements }
        while i < range.upperBound {
            guard bytes[i] == UInt8(ascii: "{"), let end = valueEnd(bytes, i, range.upperBound) else { return nil }
            elements.append(i..<end)
            i = skipSpace(bytes, end, range.upperBound)
            guard i < range.upperBound else { return nil }
            if bytes[i] == UInt8(ascii: "]") { return elements }
            guard bytes[i] == UInt8(ascii: ",") else { return nil }
            i = skipSpace(bytes, i + 1, range.upperBound)
        }
        return nil
    }

    private static func assignment(_ bytes: [UInt8], _ range: Range<Int>) -> AgentWire.Assignment? {
        guard let members = object(bytes, range),
            keys(members, allowed: ["jobID", "attempt", "requestID", "model", "endpoint", "body", "stream", "deadline"]),
            let jobID = value("jobID", members).flatMap({ jobID(bytes, $0) }),
            let attempt = value("attempt", members).flatMap({ int(bytes, $0) }),
            let requestID = value("requestID", members).flatMap({ string(bytes, $0) }),
            let model = value("model", members).flatMap({ string(bytes, $0) }),
            let body = value("body", members).flatMap({ base64(bytes, $0) }),
            let stream = value("stream", members).flatMap({ bool(bytes, $0) }),
            let deadline = value("deadline", members).flatMap({ string(bytes, $0) }).flatMap(date)
        else { return nil }
        var endpoint = Endpoint.chatCompletions
        if let range = value("endpoint", members) {
            guard let read = string(bytes, range).flatMap(Endpoint.init(rawValue:)) else { return nil }
            endpoint = read
        }
        return AgentWire.Assignment(
            jobID: jobID, attempt: attempt, requestID: requestID, model: model, endpoint: endpoint, body: body, stream: stream,
            deadline: deadline)
    }

    private static func tokenUsage(_ bytes: [UInt8], _ range: Range<Int>) -> TokenUsage? {
        guard let members = object(bytes, range), keys(members, allowed: ["promptTokens", "completionTokens", "source"]),
            let prompt = value("promptTokens", members).flatMap({ int(bytes, $0) }),
            let completion = value("completionTokens", members).flatMap({ int(bytes, $0) }),
            TokenUsage.validCounts.contains(prompt), TokenUsage.validCounts.contains(completion)
        else { return nil }
        var source = TokenUsage.Source.provider
        if let range = value("source", members) {
            guard let read = string(bytes, range).flatMap(TokenUsage.Source.init(rawValue:)) else { return nil }
            source = read
        }
        return TokenUsage(promptTokens: prompt, completionTokens: completion, source: source)
    }

    /// A date in the form `JSONEncoder` writes (`2026-12-06T10:00:00Z`), or `nil` (for any
    /// other form, which the decoder reads).
    static func date(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
            b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b[19] == UInt8(ascii: "Z")
        else { return nil }
        func number(_ range: Range<Int>) -> Int64? {
            var value: Int64 = 0
            for i in range {
                guard b[i] >= 0x30, b[i] <= 0x39 else { return nil }
                value = value * 10 + Int64(b[i] - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19), year >= 1600, (1...12).contains(month), day >= 1,
            day <= ISO8601Text.daysIn(month: month, year: year), hour < 24, minute < 60, second < 60
        else { return nil }
        let days = ISO8601Text.daysSince1970(year: year, month: month, day: day)
        return Date(timeIntervalSince1970: Double(days * 86_400 + hour * 3_600 + minute * 60 + second))
    }

    private static func jobID(_ bytes: [UInt8], _ range: Range<Int>) -> JobID? {
        string(bytes, range).flatMap(JobID.init(_:))
    }

    /// A string without escapes (one with escapes is left to the decoder).
    private static func string(_ bytes: [UInt8], _ range: Range<Int>) -> String? {
        guard range.count >= 2, bytes[range.lowerBound] == UInt8(ascii: "\""),
            plainStringEnd(bytes, range.lowerBound, range.upperBound) == range.upperBound
        else { return nil }
        return String(validating: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)], as: UTF8.self)
    }

    private static func base64(_ bytes: [UInt8], _ range: Range<Int>) -> Data? {
        guard let text = string(bytes, range) else { return nil }
        return Data(base64Encoded: text)
    }

    /// An integer as JSON writes it (no fraction, exponent or leading zeros).
    static func int(_ bytes: [UInt8], _ range: Range<Int>) -> Int? {
        let slice = bytes[range]
        guard !slice.isEmpty, slice.count <= 19 else { return nil }
        var digits = slice[...]
        if digits.first == UInt8(ascii: "-") { digits = digits.dropFirst() }
        guard let first = digits.first, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), first != 0x30 || digits.count == 1 else {
            return nil
        }
        return Int(String(decoding: slice, as: UTF8.self))
    }

    /// A number as JSON writes it without an exponent: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`.
    private static func double(_ bytes: [UInt8], _ range: Range<Int>) -> Double? {
        let slice = bytes[range]
        guard !slice.isEmpty, slice.count <= 32 else { return nil }
        func isDigit(_ byte: UInt8) -> Bool { byte >= 0x30 && byte <= 0x39 }
        var i = slice.startIndex
        if slice[i] == UInt8(ascii: "-") { i += 1 }
        let integerStart = i
        while i < slice.endIndex, isDigit(slice[i]) { i += 1 }
        let integerDigits = i - integerStart
        guard integerDigits > 0, slice[integerStart] != 0x30 || integerDigits == 1 else { return nil }
        if i < slice.endIndex {
            guard slice[i] == UInt8(ascii: ".") else { return nil }
            i += 1
            let fractionStart = i
            while i < slice.endIndex, isDigit(slice[i]) { i += 1 }
            guard i > fractionStart, i == slice.endIndex else { return nil }
        }
        return Double(String(decoding: slice, as: UTF8.self)).flatMap { $0.isFinite ? $0 : nil }
    }

    /// The text of the string at `range`, its escapes read (`\n`, `\"`, `\uXXXX` and
    /// surrogate pairs…); `nil` when it is not a well-formed string.
    static func escapedString(_ bytes: [UInt8], _ range: Range<Int>) -> String? {
        guard range.count >= 2, bytes[range.lowerBound] == UInt8(ascii: "\""), bytes[range.upperBound - 1] == UInt8(ascii: "\"") else {
            return nil
        }
        if plainStringEnd(bytes, range.lowerBound, range.upperBound) == range.upperBound {
            return String(validating: bytes[(range.lowerBound + 1)..<(range.upperBound - 1)], as: UTF8.self)
        }
        var out: [UInt8] = []
        out.reserveCapacity(range.count)
        var i = range.lowerBound + 1
        let end = range.upperBound - 1
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= end else { return nil }
            var value: UInt32 = 0
            for byte in bytes[at..<(at + 4)] {
                let digit: UInt32
                switch byte {
                case 0x30...0x39: digit = UInt32(byte - 0x30)
                case 0x41...0x46: digit = UInt32(byte - 0x41 + 10)
                case 0x61...0x66: digit = UInt32(byte - 0x61 + 10)
                default: return nil
                }
                value = value << 4 | digit
            }
            return value
        }
        while i < end {
            let byte = bytes[i]
            if byte < 0x20 || byte == UInt8(ascii: "\"") { return nil }
            guard byte == UInt8(ascii: "\\") else {
                out.append(byte)
                i += 1
                continue
            }
            guard i + 1 < end else { return nil }
            switch bytes[i + 1] {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard var scalar = hex4(i + 2) else { return nil }
                var consumed = 6
                if (0xD800...0xDBFF).contains(scalar) {
                    guard i + 7 < end, bytes[i + 6] == UInt8(ascii: "\\"), bytes[i + 7] == UInt8(ascii: "u"), let low = hex4(i + 8),
                        (0xDC00...0xDFFF).contains(low)
                    else { return nil }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    consumed = 12
                }
                guard let unicode = Unicode.Scalar(scalar) else { return nil }
                out.append(contentsOf: Array(String(Character(unicode)).utf8))
                i += consumed
                continue
            default: return nil
            }
            i += 2
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func bool(_ bytes: [UInt8], _ range: Range<Int>) -> Bool? {
        if bytes[range].elementsEqual("true".utf8) { return true }
        if bytes[range].elementsEqual("false".utf8) { return false }
        return nil
    }

    private static func skipSpace(_ bytes: [UInt8], _ start: Int, _ end: Int) -> Int {
        var i = start
        while i < end, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
        return i
    }

    /// The index past the closing quote of a string at `start` that has no escapes and no
    /// control characters; `nil` for one that has (left to the decoder).
    private static func plainStringEnd(_ bytes: [UInt8], _ start: Int, _ end: Int) -> Int? {
        var i = start + 1
        while i < end {
            let byte = bytes[i]
            if byte == UInt8(ascii: "\"") { return i + 1 }
            if byte == UInt8(ascii: "\\") || byte < 0x20 { return nil }
            i += 1
        }
        return nil
    }

    /// The index past the value at `start` (``JSONScanner``'s bounds; a string in it is checked
    /// when it is read), or `nil` when it runs past `end`.
    private static func valueEnd(_ bytes: [UInt8], _ start: Int, _ end: Int) -> Int? {
        guard start < end, let valueEnd = JSONScanner.skipValue(bytes, start), valueEnd <= end else { return nil }
        return valueEnd
    }
}
