import MizanCore
import Testing

@Suite("Server-sent event parser")
struct ServerSentEventParserTests {
    let stream = "data: {\"a\":1}\n\n: keep-alive\n\nevent: message\ndata: {\"b\":\ndata: 2}\r\n\r\ndata: [DONE]\n\n"

    @Test func parsesWholeStream() {
        var parser = ServerSentEventParser()
        let events = parser.feed(Array(stream.utf8))
        #expect(events == ["{\"a\":1}", "{\"b\":\n2}", "[DONE]"])
        #expect(parser.finish() == nil)
    }

    @Test(arguments: [1, 2, 3, 7, 64])
    func parsesAnySplit(size: Int) {
        var parser = ServerSentEventParser()
        let bytes = Array(stream.utf8)
        var events: [String] = []
        for start in stride(from: 0, to: bytes.count, by: size) {
            events += parser.feed(bytes[start..<min(bytes.count, start + size)])
        }
        #expect(events == ["{\"a\":1}", "{\"b\":\n2}", "[DONE]"])
    }

    @Test func finishReturnsAnUnterminatedEvent() {
        var parser = ServerSentEventParser()
        #expect(parser.feed(Array("data: last".utf8)).isEmpty)
        #expect(parser.finish() == "last")
    }
}
