import AsyncHTTPClient
import Foundation
import MizanTestSupport
import NIOCore
import NIOHTTP1
import Testing

/// A browser-like client of the console for router tests: a cookie jar, forms, no redirects
/// followed (the tests look at each 303).
final class ConsoleClient: @unchecked Sendable {
    /// Redirects are the tests' to see.
    static let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

    struct Answer {
        var status: Int
        var headers: HTTPHeaders
        var text: String

        var location: String? { headers["Location"].first }
        /// The hidden CSRF field of the page's first form.
        var csrf: String? { Self.value(of: "csrf", in: text) }

        /// The `value` of the input named `name`.
        static func value(of name: String, in text: String) -> String? {
            guard let field = text.range(of: "name=\"\(name)\" value=\"") else { return nil }
            let rest = text[field.upperBound...]
            return rest.firstIndex(of: "\"").map { String(rest[..<$0]) }
        }

        /// The `value` of the input with id `id`.
        func value(ofID id: String) -> String? {
            guard let field = text.range(of: "id=\"\(id)\"") else { return nil }
            let rest = text[field.upperBound...]
            guard let value = rest.range(of: "value=\"") else { return nil }
            let after = rest[value.upperBound...]
            return after.firstIndex(of: "\"").map { String(after[..<$0]) }
        }
    }

    let base: String
    var cookies: [String: String] = [:]

    init(port: Int) { base = "http://127.0.0.1:\(port)" }

    /// A request with the jar's cookies; `Set-Cookie` answers update the jar.
    func send(_ method: HTTPMethod, _ path: String, form: [String: String]? = nil, headers: [(String, String)] = []) async throws -> Answer
    {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if !cookies.isEmpty {
            request.headers.add(name: "Cookie", value: cookies.map { "\($0.key)=\($0.value)" }.joined(separator: "; "))
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let form {
            request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            request.body = .bytes(ByteBuffer(string: Self.encode(form)))
        }
        let response = try await Self.http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 8 << 20)
        for cookie in response.headers["Set-Cookie"] {
            let pair = cookie.split(separator: ";")[0].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(pair[0])
            let value = pair.count > 1 ? String(pair[1]) : ""
            if value.isEmpty || cookie.contains("Max-Age=0") { cookies[name] = nil } else { cookies[name] = value }
        }
        return Answer(status: Int(response.status.code), headers: response.headers, text: String(buffer: body))
    }

    /// Signs in with `token` through the form, as a browser does.
    @discardableResult
    func signIn(_ token: String) async throws -> Answer {
        let form = try await send(.GET, "/console/sign-in")
        return try await send(.POST, "/console/sign-in", form: ["csrf": form.csrf ?? "", "token": token])
    }

    /// Posts a form of the page at `page`, with its CSRF token.
    func submit(_ path: String, from page: String, _ fields: [String: String]) async throws -> Answer {
        let csrf = try await send(.GET, page).csrf ?? ""
        return try await send(.POST, path, form: fields.merging(["csrf": csrf]) { mine, _ in mine })
    }

    static func encode(_ form: [String: String]) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return form.map {
            "\($0.key.addingPercentEncoding(withAllowedCharacters: allowed)!)=\($0.value.addingPercentEncoding(withAllowedCharacters: allowed)!)"
        }
        .joined(separator: "&")
    }
}
