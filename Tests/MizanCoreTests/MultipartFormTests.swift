import Foundation
import Testing

@testable import MizanCore

@Suite("Multipart forms: read, rewritten, written back")
struct MultipartFormTests {
    static let boundary = "b0UNDARY"

    static func form(preamble: String = "", model: String = "whisper-1", file: String = "RIFF\r\n--b0UNDAR not it") -> Data {
        Data(
            (preamble
                + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
                + "\(file)\r\n--\(boundary)\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n\(model)\r\n--\(boundary)--\r\n").utf8)
    }

    @Test func readsPartsAndWritesThemBackByteForByte() throws {
        let form = try MultipartForm(body: Self.form(), boundary: Self.boundary)
        #expect(form.parts.map(\.name) == ["file", "model"])
        #expect(form.parts[0].filename == "a.wav" && form.parts[0].body == Data("RIFF\r\n--b0UNDAR not it".utf8))
        #expect(form.text("model") == "whisper-1" && form.text("file") == nil, "a file is not a text field")
        #expect(form.encoded == Self.form(), "a canonical form is written back as it came")
        #expect(form.textBytes == "whisper-1".utf8.count, "a file's bytes are not text")
    }

    @Test func aPreambleIsDroppedSoThatTheFirstLineNamesTheBoundary() throws {
        let form = try MultipartForm(body: Self.form(preamble: "ignored preamble\r\n"), boundary: Self.boundary)
        #expect(form.encoded == Self.form())
        #expect(MultipartForm.boundary(ofCanonical: form.encoded) == Self.boundary)
        #expect(MultipartForm(canonical: form.encoded) == form)
    }

    @Test func replacingATextFieldChangesItAlone() throws {
        let form = try MultipartForm(body: Self.form(), boundary: Self.boundary)
        #expect(form.replacing("model", with: "local-whisper").encoded == Self.form(model: "local-whisper"))
        #expect(form.replacing("nothing", with: "x") == form)
    }

    @Test(
        arguments: [
            ("multipart/form-data; boundary=abc", "abc"),
            ("Multipart/Form-Data;boundary=\"a b\"", "a b"),
            ("multipart/form-data", nil),
            ("application/json; boundary=abc", nil),
            ("multipart/form-data; boundary=" + String(repeating: "x", count: 71), nil),
        ] as [(String, String?)])
    func theBoundaryComesFromTheContentType(_ header: String, _ boundary: String?) {
        #expect(MultipartForm.boundary(fromContentType: header) == boundary)
    }

    @Test func malformedFormsAreRefusedAsBadRequests() {
        let cases: [(String, String)] = [
            ("no boundary at all", "no boundary"),
            ("--b0UNDARY\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm", "never closed"),
            ("--b0UNDARY\r\nContent-Disposition: form-data; name=\"model\"", "headers without an end"),
            ("--b0UNDARYjunk", "a boundary not followed by a line end"),
        ]
        for (body, why) in cases {
            #expect(throws: MizanError.self, "\(why)") { _ = try MultipartForm(body: Data(body.utf8), boundary: Self.boundary) }
        }
        let many =
            (0...MultipartForm.maxParts).map { "--b\r\nContent-Disposition: form-data; name=\"f\($0)\"\r\n\r\nx\r\n" }.joined()
            + "--b--\r\n"
        #expect(throws: MizanError.self, "more parts than the bound") { _ = try MultipartForm(body: Data(many.utf8), boundary: "b") }
    }

    @Test func aTranscriptionRequestIsReadFromItsForm() throws {
        let request = try ClientRequest(
            endpoint: .audioTranscriptions, body: Self.form(preamble: "x\r\n"), contentType: "multipart/form-data; boundary=b0UNDARY")
        #expect(request.model == "whisper-1" && !request.stream)
        #expect(request.body == Self.form(), "kept in canonical form")
        #expect(request.withModel("local") == Self.form(model: "local"))
        #expect(request.promptBytes == 9 && request.outputLimit == nil)
        #expect(Endpoint.audioTranscriptions.contentType(of: request.body) == "multipart/form-data; boundary=b0UNDARY")
        // Not a form, a form without its file or model, a stream: refused.
        #expect(throws: MizanError.self) { _ = try ClientRequest(endpoint: .audioTranscriptions, body: Data("{}".utf8)) }
        let noFile = Data("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n--b--\r\n".utf8)
        #expect(throws: MizanError.self) {
            _ = try ClientRequest(endpoint: .audioTranscriptions, body: noFile, contentType: "multipart/form-data; boundary=b")
        }
        let stream = Data(
            ("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nm\r\n"
                + "--b\r\nContent-Disposition: form-data; name=\"stream\"\r\n\r\ntrue\r\n--b--\r\n").utf8)
        #expect(throws: MizanError.self) {
            _ = try ClientRequest(endpoint: .audioTranscriptions, body: stream, contentType: "multipart/form-data; boundary=b")
        }
    }
}
