// libFuzzer targets for the parsers that take untrusted bytes, compiled with MizanCore's
// sources by Scripts/fuzz (swiftc -sanitize=fuzzer,address). MIZAN_FUZZ_TARGET picks one:
// chat (ChatCompletionRequest and its in-place model rewrite), sse (ServerSentEventParser),
// text (SafeText), channel (the agent channel's hand-written line reader, against JSONDecoder),
// batch (a batch input file: BatchInput and its result lines).
// A crash or a broken invariant stops the run with the input saved.
import Foundation

let target = ProcessInfo.processInfo.environment["MIZAN_FUZZ_TARGET"] ?? "chat"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = Data(bytes: start, count: count)
    switch target {
    case "chat": fuzzChatRequest(data)
    case "sse": fuzzServerSentEvents(data)
    case "text": fuzzSafeText(data)
    case "channel": fuzzChannelLine(data)
    case "batch": fuzzBatchInput(data)
    default: fatalError("unknown MIZAN_FUZZ_TARGET \(target)")
    }
    return 0
}

/// A body that parses keeps every member but `model` when the model is rewritten, and the
/// rewritten body names the new model once.
func fuzzChatRequest(_ data: Data) {
    guard let request = try? ChatCompletionRequest(body: data) else { return }
    let rewritten = request.withModel("fuzz-model")
    guard let again = try? ChatCompletionRequest(body: rewritten), again.model == "fuzz-model" else {
        fatalError("the rewritten body does not parse with the new model")
    }
    guard JSONScanner.duplicateTopLevelKey(in: rewritten) == nil else { fatalError("the rewrite made a duplicate key") }
    if var before = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
        var after = (try? JSONSerialization.jsonObject(with: rewritten)) as? [String: Any]
    {
        before["model"] = nil
        after["model"] = nil
        // Compared in a canonical form of our own: NSDictionary's equality is not reliable on
        // Linux, and neither is the key order of JSONSerialization's `.sortedKeys` (it sorts with
        // Foundation's string comparison, which can tie distinct keys, so equal dictionaries
        // were seen to serialize differently).
        guard canonical(before) == canonical(after) else { fatalError("the rewrite changed another member") }
    }
}

/// A JSON value as text with object keys in Swift's (total) string order.
func canonical(_ value: Any) -> String {
    switch value {
    case let object as [String: Any]:
        return "{" + object.keys.sorted().map { "\($0.debugDescription):\(canonical(object[$0]!))" }.joined(separator: ",") + "}"
    case let array as [Any]:
        return "[" + array.map(canonical).joined(separator: ",") + "]"
    case let string as String:
        return string.debugDescription
    case is NSNull:
        return "null"
    default:
        return "\(value)"
    }
}

/// Events come out the same however the bytes are split.
func fuzzServerSentEvents(_ data: Data) {
    let bytes = [UInt8](data)
    var whole = ServerSentEventParser()
    var expected = whole.feed(bytes)
    if let last = whole.finish() { expected.append(last) }
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    var pieces = ServerSentEventParser()
    var events = pieces.feed(bytes[..<split])
    for byte in bytes[split...] { events += pieces.feed(CollectionOfOne(byte)) }
    if let last = pieces.finish() { events.append(last) }
    guard events == expected else { fatalError("split input gave other events") }
}

/// Escaped text holds no control character and keeps every other character.
func fuzzSafeText(_ data: Data) {
    let text = String(decoding: data, as: UTF8.self)
    let escaped = SafeText.escaped(text)
    guard
        !escaped.unicodeScalars.contains(where: {
            $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x2028 || $0.value == 0x2029
        })
    else {
        fatalError("a control character survived escaping")
    }
    let plain = text.unicodeScalars.filter {
        $0.value >= 0x20 && !(0x7F...0x9F).contains($0.value) && $0 != "\\" && $0.value != 0x2028 && $0.value != 0x2029
    }
    guard plain.allSatisfy({ escaped.unicodeScalars.contains($0) }) else { fatalError("escaping lost a character") }
}

/// A line the channel's hand reader takes is a frame JSONDecoder reads the same, and the frame
/// written back (by hand or by the encoder) reads back the same.
func fuzzChannelLine(_ data: Data) {
    let line = [UInt8](data)
    guard let frame = ChannelLineReader.read(line) else { return }
    guard let standard = try? AgentWire.decoder().decode(AgentWire.ChannelFrame.self, from: data) else {
        fatalError("the hand reader took a line JSONDecoder refuses")
    }
    let encoder = AgentWire.encoder()
    encoder.outputFormatting = [.sortedKeys]
    guard let a = try? encoder.encode(frame), let b = try? encoder.encode(standard), a == b else {
        fatalError("the hand reader read another frame than JSONDecoder")
    }
    guard let written = try? frame.line(fallback: AgentWire.encoder()),
        let again = try? AgentWire.ChannelFrame.read(line: Array(written.dropLast()), fallback: AgentWire.decoder()),
        (try? encoder.encode(again)) == a
    else { fatalError("the frame written back reads back otherwise") }
}

/// A batch input file: refused with a line's number or read into lines whose bodies are the
/// `body` members as sent, each a JSON object; a result line built from any custom_id is JSON.
func fuzzBatchInput(_ data: Data) {
    guard let lines = try? BatchInput.lines(of: data, maxLineBytes: 1 << 16) else { return }
    var seen = Set<String>()
    for line in lines {
        guard seen.insert(line.customID).inserted else { fatalError("a custom_id twice") }
        guard let body = try? BatchInput.body(of: line), (try? JSONSerialization.jsonObject(with: body)) is [String: Any] else {
            fatalError("a line's body is not the object it was checked as")
        }
        let result = BatchInput.resultLine(customID: line.customID, status: 200, requestID: "r", body: body, error: nil)
        guard let parsed = try? JSONSerialization.jsonObject(with: result) as? [String: Any],
            parsed["custom_id"] as? String == line.customID
        else { fatalError("a result line is not JSON naming its custom_id") }
    }
}
