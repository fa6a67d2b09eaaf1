import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// The console's sign-out across a restart of the gateway on its SQLite file.
@Suite("Console sessions across a gateway restart")
struct ConsoleRestartProcessTests {
    static let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

    struct Page {
        var status: Int
        var headers: HTTPHeaders
        var text: String

        func cookie(_ name: String) -> String? {
            headers["Set-Cookie"].first { $0.hasPrefix(name + "=") }.map { String($0.split(separator: ";")[0].dropFirst(name.count + 1)) }
        }

        var csrf: String? {
            guard let field = text.range(of: #"name="csrf" value=""#) else { return nil }
            let rest = text[field.upperBound...]
            return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
        }
    }

    static func send(_ method: HTTPMethod, _ url: String, cookies: [String: String], form: String? = nil) async throws -> Page {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if !cookies.isEmpty { request.headers.add(name: "Cookie", value: cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; ")) }
        if let form {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: form))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 8 << 20)
        return Page(status: Int(response.status.code), headers: response.headers, text: String(buffer: body))
    }

    @Test func aSignedOutCookieStaysSignedOutWhenTheGatewayStartsAgainOnItsFile() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-console-restart-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let (first, url) = try await startGateway(workingDirectory: folder.path)
        let form = try await Self.send(.GET, "\(url)/console/sign-in", cookies: [:])
        let nonce = try #require(form.cookie("mizan_console_signin"))
        let signedIn = try await Self.send(
            .POST, "\(url)/console/sign-in", cookies: ["mizan_console_signin": nonce],
            form: "csrf=\(try #require(form.csrf))&token=\(e2eAdminToken)")
        let session = try #require(signedIn.cookie("mizan_console"), "\(signedIn.status)")
        let console = try await Self.send(.GET, "\(url)/console", cookies: ["mizan_console": session])
        #expect(console.status == 200)
        let out = try await Self.send(
            .POST, "\(url)/console/sign-out", cookies: ["mizan_console": session], form: "csrf=\(try #require(console.csrf))")
        #expect(out.status == 303)
        #expect(try await first.terminate() == 0)

        let port = String(url.split(separator: ":").last ?? "")
        let (second, _) = try await startGateway(["--port", port], workingDirectory: folder.path)
        let again = try await Self.send(.GET, "\(url)/console", cookies: ["mizan_console": session])
        #expect(again.status == 303 && again.headers["Location"].first == "/console/sign-in", "the old cookie is refused after the restart")
        _ = try await second.terminate()
    }
}
