import Foundation
import Testing

@testable import MizanCore

/// The channel's hand-written lines are the JSON `JSONEncoder` and `JSONDecoder` agree with, and
/// every line the hand reader is not sure of goes to the decoder.
@Suite("Agent channel lines")
struct AgentChannelCodecTests {
    typealias Frame = AgentWire.ChannelFrame

    /// The frame's canonical JSON (sorted keys), to compare frames by.
    static func canonical(_ frame: Frame) throws -> String {
        let encoder = AgentWire.encoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(frame), as: UTF8.self)
    }

    static func job(_ n: Int, body: Data, deadline: Date, endpoint: Endpoint = .chatCompletions, stream: Bool = false)
        -> AgentWire
        .Assignment
    {
        AgentWire.Assignment(
            jobID: JobID(), attempt: n, requestID: "req-\(n)", model: "llama3:8b", endpoint: endpoint, body: body, stream: stream,
            deadline: deadline)
    }

    /// The frames of an agent-served request's hot path, in their shapes.
    static func hotFrames() -> [Frame] {
        let deadline = Date(timeIntervalSince1970: 1_796_000_123)
        var frames: [Frame] = []
        var lease = Frame(.lease, id: 7)
        lease.lease = AgentWire.LeaseRequest(limit: 3, waitSeconds: 25)
        frames.append(lease)
        lease.lease = AgentWire.LeaseRequest(limit: 1)
        frames.append(lease)
        lease.lease = AgentWire.LeaseRequest(limit: 64, waitSeconds: 0.25)
        frames.append(lease)
        var complete = Frame(.complete, id: 12)
        complete.jobID = JobID()
        complete.complete = AgentWire.CompleteRequest(
            attempt: 2, result: Data(#"{"object":"chat.completion","choices":[{"message":{"content":"h\u00e9\n\"x\""}}]}"#.utf8),
            usage: TokenUsage(promptTokens: 11, completionTokens: 1_000_000_000, source: .estimated))
        frames.append(complete)
        complete.complete?.usage = nil
        frames.append(complete)
        complete.complete = AgentWire.CompleteRequest(attempt: 1, result: Data(), usage: TokenUsage(promptTokens: 0, completionTokens: 0))
        frames.append(complete)
        var leased = Frame.reply(to: 7)
        leased.leased = AgentWire.LeaseResponse(jobs: [])
        frames.append(leased)
        leased.leased = AgentWire.LeaseResponse(jobs: [
            job(1, body: Data(#"{"model":"llama3:8b","messages":[{"role":"user","content":"\u0000 ☃"}]}"#.utf8), deadline: deadline),
            job(2, body: Data([0, 255, 10, 13, 34, 92]), deadline: deadline.addingTimeInterval(0.75), endpoint: .embeddings, stream: true),
        ])
        frames.append(leased)
        var outcome = Frame.reply(to: 12)
        outcome.outcome = AgentWire.ReportOutcome(jobID: JobID(), state: .succeeded, error: nil)
        frames.append(outcome)
        outcome.outcome?.state = nil
        frames.append(outcome)
        frames.append(Frame.reply(to: 3))
        frames.append(Frame.reply(to: 4, status: 204))
        return frames
    }

    @Test func handWrittenLinesAreTheDecodersFrames() throws {
        for frame in Self.hotFrames() {
            let name = try Self.canonical(frame)
            let line = try #require(frame.writtenByHand(), "\(name) is written by hand")
            let decoded = try AgentWire.decoder().decode(Frame.self, from: Data(line))
            // Dates go in whole seconds, as JSONEncoder writes them.
            let standard = try AgentWire.decoder().decode(Frame.self, from: AgentWire.encoder().encode(frame))
            #expect(try Self.canonical(decoded) == Self.canonical(standard))
            let byHand = try #require(Frame.readByHand(line), "\(String(decoding: line, as: UTF8.self)) is read by hand")
            #expect(try Self.canonical(byHand) == Self.canonical(standard))
        }
    }

    @Test func theEncodersLinesAreReadByHandAsTheDecoderReadsThem() throws {
        for frame in Self.hotFrames() {
            let line = [UInt8](try AgentWire.encoder().encode(frame))
            let standard = try AgentWire.decoder().decode(Frame.self, from: Data(line))
            if line.contains(UInt8(ascii: "\\")) {
                // JSONEncoder escapes a slash (`chat\/completions`): an escape goes to the decoder.
                #expect(Frame.readByHand(line) == nil)
            } else {
                let byHand = try #require(Frame.readByHand(line), "\(String(decoding: line, as: UTF8.self)) is read by hand")
                #expect(try Self.canonical(byHand) == Self.canonical(standard))
            }
            #expect(try Self.canonical(Frame.read(line: line, fallback: AgentWire.decoder())) == Self.canonical(standard))
        }
    }

    @Test func randomBodiesAndDatesGoThroughUnchanged() throws {
        var generator = SystemRandomNumberGenerator()
        for n in 0..<300 {
            let body = Data((0..<Int.random(in: 0...600, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
            // Years 1700 to 2300, whole seconds and fractions.
            let deadline = Date(timeIntervalSince1970: Double.random(in: -8_500_000_000...10_400_000_000, using: &generator))
            var frame = Frame.reply(to: n)
            frame.leased = AgentWire.LeaseResponse(jobs: [Self.job(n, body: body, deadline: deadline)])
            let line = try #require(frame.writtenByHand())
            let read = try #require(Frame.readByHand(line)?.leased?.jobs.first)
            #expect(read.body == body)
            #expect(read.deadline == Date(timeIntervalSince1970: deadline.timeIntervalSince1970.rounded(.down)))
            let standard = try AgentWire.decoder().decode(Frame.self, from: Data(line))
            #expect(standard.leased?.jobs.first == read)
        }
    }

    @Test func linesTheHandReaderIsNotSureOfGoToTheDecoder() throws {
        let id = JobID().description
        let left: [String] = [
            #"{"op":"lease","id":1,"lease":{"limit":1},"extra":true}"#,  // another field
            #"{"op":"lease","id":1,"id":2,"lease":{"limit":1}}"#,  // a key twice
            #"{"op":"lease","id":1,"lease":{"limit":1}} x"#,  // something after the object
            #"{"op":"lease","id":1,,"lease":{"limit":1}}"#,  // two commas
            #"{"op":"lease","id":1.0,"lease":{"limit":1}}"#,  // a fraction for an integer
            #"{"op":"lease","id":01,"lease":{"limit":1}}"#,  // a leading zero
            #"{"op":"lease","id":1,"lease":{"limit":1e2}}"#,  // an exponent
            #"{"op":"lease","id":3,"lease":{"limit":3,"waitSeconds":05}}"#,  // a leading zero (found by the fuzzer)
            #"{"op":"lease","id":3,"lease":{"limit":3,"waitSeconds":5.}}"#,  // a point without digits
            #"{"op":"lease","id":3,"lease":{"limit":3,"waitSeconds":-}}"#,
            #"{"op":"lease","id":3,"lease":{"limit":3,"waitSeconds":.5}}"#,
            #"{"op":"l\u0065ase","id":1,"lease":{"limit":1}}"#,  // an escape
            #"{"op":"heartbeat","id":1,"heartbeat":{}}"#,  // not a frame of the hot path
            #"{"op":"complete","id":1,"jobID":"\#(id)","complete":{"attempt":1,"result":"e30=","usage":{"promptTokens":-1,"completionTokens":0}}}"#,
            #"{"op":"complete","id":1,"jobID":"\#(id)","complete":{"attempt":1,"result":"not base64!"}}"#,
            #"{"op":"complete","id":1,"jobID":"nope","complete":{"attempt":1,"result":"e30="}}"#,
            #"{"op":"reply","id":1,"leased":{"jobs":[{"jobID":"\#(id)","attempt":1,"requestID":"r","model":"m","body":"e30=","stream":false,"deadline":"2026-12-06T10:00:00.500Z"}]}}"#,
            #"{"op":"reply","id":1,"leased":{"jobs":[{"jobID":"\#(id)","attempt":1,"requestID":"r","model":"m","body":"e30=","stream":false,"deadline":"2026-02-30T10:00:00Z"}]}}"#,
            #"{"op":"reply","id":1,"outcome":{"jobID":"\#(id)","state":"succeeded","error":null}}"#,
            #"{"op":"reply","id":1,"status":200"#,  // cut short
        ]
        for text in left {
            let line = [UInt8](text.utf8)
            #expect(Frame.readByHand(line) == nil, "\(text) goes to the decoder")
            // And the decoder's answer is what reading gives — but a key named twice, which
            // parsers read differently, is refused.
            let standard = try? AgentWire.decoder().decode(Frame.self, from: Data(line))
            let read = try? Frame.read(line: line, fallback: AgentWire.decoder())
            if text.contains(#""id":1,"id":2"#) {
                #expect(read == nil, "a key twice is refused")
                continue
            }
            #expect(try standard.map(Self.canonical) == read.map(Self.canonical))
        }
        // Frames outside the hot path are written by the encoder.
        var heartbeat = Frame(.heartbeat, id: 1)
        heartbeat.heartbeat = AgentWire.HeartbeatRequest(report: NodeReport(models: ["m"], maxConcurrency: 1), running: [])
        #expect(heartbeat.writtenByHand() == nil)
        let line = try heartbeat.line(fallback: AgentWire.encoder())
        #expect(line.last == 0x0A)
        #expect(try AgentWire.decoder().decode(Frame.self, from: Data(line.dropLast())).heartbeat != nil)
        var refused = Frame.reply(to: 1, status: 409)
        refused.error = MizanError(.conflict, "The lease moved on.").envelope.error
        #expect(refused.writtenByHand() == nil)
    }

    @Test func wholeSecondDatesAreReadAsFoundationReadsThem() throws {
        let formatter = ISO8601DateFormatter()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            // Years 1600 to 9999 (before, Foundation counts Julian days and the hand path leaves them).
            let date = Date(timeIntervalSince1970: Double.random(in: -11_676_096_000...253_000_000_000, using: &generator).rounded(.down))
            let text = formatter.string(from: date)
            #expect(ChannelLineWriter.wholeSeconds(date) == text)
            #expect(ChannelLineReader.date(text) == formatter.date(from: text), "\(text)")
        }
        #expect(ChannelLineReader.date("2024-02-29T23:59:59Z") == formatter.date(from: "2024-02-29T23:59:59Z"))
        #expect(ChannelLineReader.date("2023-02-29T00:00:00Z") == nil)
        #expect(ChannelLineReader.date("2023-13-01T00:00:00Z") == nil)
        #expect(ChannelLineReader.date("2023-01-01T24:00:00Z") == nil)
        #expect(ChannelLineReader.date("1582-10-15T00:00:00Z") == nil)
        #expect(ChannelLineWriter.wholeSeconds(Date(timeIntervalSince1970: -12_000_000_000)) == nil)
    }
}
