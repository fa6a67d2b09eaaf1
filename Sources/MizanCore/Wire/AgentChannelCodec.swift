import Foundation

/// The channel's frames as lines, written and read by hand for the frames every agent-served
/// request makes (a `lease` call and its reply with the jobs, a `complete` call and its reply
/// with the outcome) and by `JSONEncoder`/`JSONDecoder` for all others. Both sides spent about a
/// seventh of their CPU per request in Foundation's JSON coding of these four frames.
///
/// The lines are the same JSON either way (a reader may use any JSON decoder): dates in whole
/// seconds as `JSONEncoder`'s ISO 8601 strategy writes them, bytes in base64. A line the hand
/// reader does not expect in every detail — another field, an escape, a duplicate key, a value
/// out of bounds — is read by `JSONDecoder`, whose errors name the field.
extension AgentWire.ChannelFrame {
    /// The frame as one line of the channel: its JSON and a newline.
    /// - Parameter encoder: The encoder for frames written by `JSONEncoder` (``AgentWire/encoder()``).
    public func line(fallback encoder: JSONEncoder) throws -> [UInt8] {
        if var bytes = ChannelLineWriter.write(self) {
            bytes.append(0x0A)
            return bytes
        }
        var bytes = [UInt8](try encoder.encode(self))
        bytes.append(0x0A)
        return bytes
    }

    /// Reads a frame from one line of the channel (without its newline).
    /// - Parameter decoder: The decoder for lines the hand reader leaves (``AgentWire/decoder()``).
    /// - Throws: What `decoder` throws for a line that is not a frame.
    public static func read(line: [UInt8], fallback decoder: JSONDecoder) throws -> AgentWire.ChannelFrame {
        try read(line: line) { try decoder.decode(AgentWire.ChannelFrame.self, from: $0) }
    }

    /// Reads a frame from one line of the channel (without its newline), the lines the hand
    /// reader leaves by `decode` (the gateway's decodes with errors that name the field).
    public static func read(
        line: [UInt8], orElse decode: (Data) throws -> AgentWire.ChannelFrame
    ) throws -> AgentWire.ChannelFrame {
        if let frame = ChannelLineReader.read(line) { return frame }
        // Two values for one key are read differently by different parsers (a frame naming
        // "op" twice): refused, as a client body naming a key twice is.
        if let key = JSONScanner.duplicateTopLevelKey(in: Data(line)) {
            throw MizanError(.badRequest, "A channel frame names '\(SafeText.excerpt(key))' more than once; each key may appear only once.")
        }
        return try decode(Data(line))
    }

    /// The frame as `read(line:fallback:)` reads it by hand, or `nil` where it leaves it to the
    /// decoder (for tests).
    static func readByHand(_ line: [UInt8]) -> AgentWire.ChannelFrame? { ChannelLineReader.read(line) }

    /// The frame as written by hand, or `nil` where `JSONEncoder` writes it (for tests).
    func writtenByHand() -> [UInt8]? { ChannelLineWriter.write(self) }
}

/// Writes the frames of an agent-served request's hot path.
enum ChannelLineWriter {
    static func write(_ frame: AgentWire.ChannelFrame) -> [UInt8]? {
        // Only the frames of the hot path, with exactly the fields they carry there.
        guard frame.heartbeat == nil, frame.fail == nil, frame.data == nil, frame.end == nil, frame.heartbeatReply == nil,
            frame.error == nil
        else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(256)
        switch frame.operation {
        case .lease:
            guard let lease = frame.lease, frame.jobID == nil, frame.complete == nil, frame.attempt == nil, frame.status == nil,
                frame.leased == nil, frame.outcome == nil
            else { return nil }
            head(&out, frame)
            out.append(contentsOf: #","lease":{"limit":"#.utf8)
            int(&out, lease.limit)
            if let wait = lease.waitSeconds {
                guard wait.isFinite else { return nil }
                out.append(contentsOf: #","waitSeconds":"#.utf8)
                out.append(contentsOf: "\(wait)".utf8)
            }
            out.append(contentsOf: "}}".utf8)
        case .complete:
            guard let jobID = frame.jobID, let complete = frame.complete, frame.lease == nil, frame.attempt == nil,
                frame.status == nil, frame.leased == nil, frame.outcome == nil
            else { return nil }
            head(&out, frame)
            out.append(contentsOf: #","jobID":""#.utf8)
            out.append(contentsOf: jobID.description.utf8)
            out.append(contentsOf: #"","complete":{"attempt":"#.utf8)
            int(&out, complete.attempt)
            out.append(contentsOf: #","result":""#.utf8)
            out.append(contentsOf: complete.result.base64EncodedString().utf8)
            out.append(UInt8(ascii: "\""))
            if let usage = complete.usage {
                out.append(contentsOf: #","usage":"#.utf8)
                tokenUsage(&out, usage)
            }
            out.append(contentsOf: "}}".utf8)
        case .reply:
            guard frame.lease == nil, frame.jobID == nil, frame.complete == nil, frame.attempt == nil else { return nil }
            head(&out, frame)
            if let status = frame.status {
                out.append(contentsOf: #","status":"#.utf8)
                int(&out, status)
            }
            switch (frame.leased, frame.outcome) {
            case (let leased?, nil):
                out.append(contentsOf: #","leased":{"jobs":["#.utf8)
                for (index, job) in leased.jobs.enumerated() {
                    if index > 0 { out.append(UInt8(ascii: ",")) }
                    guard assignment(&out, job) else { return nil }
                }
                out.append(contentsOf: "]}".utf8)
            case (nil, let outcome?):
                guard outcome.error == nil else { return nil }
                out.append(contentsOf: #","outcome":{"jobID":""#.utf8)
                out.append(contentsOf: outcome.jobID.description.utf8)
                out.append(UInt8(ascii: "\""))
                if let state = outcome.state {
                    out.append(contentsOf: #","state":"#.utf8)
                    guard string(&out, state.rawValue) else { return nil }
                }
                out.append(UInt8(ascii: "}"))
            case (nil, nil):
                break
            default:
                return nil
            }
            out.append(UInt8(ascii: "}"))
        default:
            return nil
        }
        return out
    }

    private static func head(_ out: inout [UInt8], _ frame: AgentWire.ChannelFrame) {
        out.append(contentsOf: #"{"op":""#.utf8)
        out.append(contentsOf: frame.operation.rawValue.utf8)
        out.append(contentsOf: #"","id":"#.utf8)
        int(&out, frame.id)
    }

    private static func int(_ out: inout [UInt8], _ value: Int) {
        out.append(contentsOf: String(value).utf8)
    }

    /// A string that needs no escaping, quoted; `false` (nothing written) for one that does.
    private static func string(_ out: inout [UInt8], _ value: String) -> Bool {
        let utf8 = value.utf8
        guard !utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 >= 0x7F }) else {
            return false
        }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: utf8)
        out.append(UInt8(ascii: "\""))
        return true
    }

    private static func tokenUsage(_ out: inout [UInt8], _ usage: TokenUsage) {
        out.append(contentsOf: #"{"promptTokens":"#.utf8)
        int(&out, usage.promptTokens)
        out.append(contentsOf: #","completionTokens":"#.utf8)
        int(&out, usage.completionTokens)
        out.append(contentsOf: #","source":""#.utf8)
        out.append(contentsOf: usage.source.rawValue.utf8)
        out.append(contentsOf: #""}"#.utf8)
    }

    private static func assignment(_ out: inout [UInt8], _ job: AgentWire.Assignment) -> Bool {
        out.append(contentsOf: #"{"jobID":""#.utf8)
        out.append(contentsOf: job.jobID.description.utf8)
        out.append(contentsOf: #"","attempt":"#.utf8)
        int(&out, job.attempt)
        out.append(contentsOf: #","requestID":"#.utf8)
        guard string(&out, job.requestID) else { return false }
        out.append(contentsOf: #","model":"#.utf8)
        guard string(&out, job.model) else { return false }
        out.append(contentsOf: #","endpoint":"#.utf8)
        guard string(&out, job.endpoint.rawValue) else { return false }
        out.append(contentsOf: #","body":""#.utf8)
        out.append(contentsOf: job.body.base64EncodedString().utf8)
        out.append(contentsOf: #"","stream":"#.utf8)
        out.append(contentsOf: (job.stream ? "true" : "false").utf8)
        out.append(contentsOf: #","deadline":""#.utf8)
        guard let deadline = wholeSeconds(job.deadline) else { return false }
        out.append(contentsOf: deadline.utf8)
        out.append(contentsOf: #""}"#.utf8)
        return true
    }

    /// A date as `JSONEncoder`'s ISO 8601 strategy writes it: UTC, whole seconds
    /// (`2026-12-06T10:00:00Z`); `nil` outside the years 1600–9999 (before the Gregorian
    /// calendar, Foundation counts Julian days).
    static func wholeSeconds(_ date: Date) -> String? {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        guard seconds.isFinite, seconds >= -11_676_096_000, seconds < 253_402_300_800 else { return nil }
        let text = ISO8601Text.text(Date(timeIntervalSince1970: seconds))
        // `ISO8601Text` writes milliseconds (here always `.000`).
        guard text.hasSuffix(".000Z") else { return nil }
        return String(text.dropLast(5)) + "Z"
    }
}
