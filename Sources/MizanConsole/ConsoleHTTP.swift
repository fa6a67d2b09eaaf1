import Foundation
import HTTPTypes
import Hummingbird
import MizanCore
import MizanGateway

/// The console's HTTP plumbing, shared by its pages: responses with its security headers,
/// redirects, cookies, forms and the checks of where a form came from.
enum ConsoleHTTP {
    /// The largest form body the console reads.
    static let maxFormBytes = 64 << 10

    /// The policy every console response carries: nothing inline, nothing from elsewhere, no
    /// framing, forms only to the console.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    /// An HTML page.
    static func html(_ page: HTML, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: page.text)))
    }

    /// A response with the console's security headers and no caching.
    static func secured(_ response: Response) -> Response {
        var response = response
        response.headers[.contentSecurityPolicy] = contentSecurityPolicy
        response.headers[.init("X-Frame-Options")!] = "DENY"
        response.headers[.init("X-Content-Type-Options")!] = "nosniff"
        response.headers[.init("Referrer-Policy")!] = "no-referrer"
        response.headers[.init("Cross-Origin-Opener-Policy")!] = "same-origin"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }

    /// A 303 to `path` (after a form, the browser asks for the page with GET).
    static func redirect(to path: String) -> Response {
        var headers = HTTPFields()
        headers[.location] = path
        return Response(status: .seeOther, headers: headers)
    }

    /// An empty answer.
    static func status(_ status: HTTPResponse.Status) -> Response {
        Response(status: status)
    }

    /// A static asset, cached for a day (its URL carries the version).
    static func asset(_ text: String, type: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = "public, max-age=86400"
        return secured(Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text))))
    }

    /// The request's cookies (the first of each name; at most 32 read).
    static func cookies(_ request: Request) -> [String: String] {
        var cookies: [String: String] = [:]
        for field in request.headers[values: .cookie] {
            for pair in field.split(separator: ";").prefix(32) {
                guard let equals = pair.firstIndex(of: "=") else { continue }
                let name = pair[..<equals].trimmingCharacters(in: .whitespaces)
                let value = pair[pair.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                if cookies[name] == nil { cookies[name] = value }
            }
        }
        return cookies
    }

    /// A `Set-Cookie` value for the console's path: `HttpOnly`, `SameSite=Strict`, and `Secure`
    /// when the browser reached the gateway over TLS (through a proxy that says so).
    static func cookie(_ name: String, _ value: String, maxAge: Int, _ request: Request) -> String {
        var text = "\(name)=\(value); Path=/console; Max-Age=\(max(0, maxAge)); HttpOnly; SameSite=Strict"
        if isSecure(request) { text += "; Secure" }
        return text
    }

    /// Whether the browser reached the gateway over HTTPS: a TLS-terminating proxy's
    /// `X-Forwarded-Proto: https` or `Forwarded: proto=https`.
    static func isSecure(_ request: Request) -> Bool {
        if request.head.scheme == "https" { return true }
        if let proto = request.headers[.init("X-Forwarded-Proto")!], proto.lowercased().hasPrefix("https") { return true }
        if let forwarded = request.headers[.init("Forwarded")!], forwarded.lowercased().contains("proto=https") { return true }
        return false
    }

    /// The gateway's URL as the browser sees it (for the agent command a page shows).
    static func origin(_ request: Request) -> String {
        let printable = { (text: String) in
            text.utf8.count <= 255 && text.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 32 && $0.value < 127 }
        }
        let host = request.head.authority.flatMap { printable($0) ? $0 : nil } ?? "127.0.0.1:8080"
        return (isSecure(request) ? "https://" : "http://") + host
    }

    /// Refuses a form sent from another site: browsers say where a form came from (`Origin`,
    /// `Sec-Fetch-Site`); a form of this console comes from the same origin.
    static func checkOrigin(_ request: Request) throws {
        if let site = request.headers[.init("Sec-Fetch-Site")!], site != "same-origin", site != "none" {
            throw ConsoleRefusal.crossOrigin
        }
        if let origin = request.headers[.origin], origin != "null" {
            let host = request.head.authority ?? ""
            guard origin == "http://" + host || origin == "https://" + host else { throw ConsoleRefusal.crossOrigin }
        }
    }

    /// A form body (`application/x-www-form-urlencoded`, at most ``maxFormBytes``), each name's
    /// first value.
    static func form(_ request: Request) async throws -> [String: String] {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        guard type.hasPrefix("application/x-www-form-urlencoded") else {
            throw ConsoleRefusal(status: .unsupportedMediaType, message: "The console takes forms (application/x-www-form-urlencoded).")
        }
        let body = request.body
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: maxFormBytes)
        } catch {
            throw ConsoleRefusal(status: .contentTooLarge, message: "The form is larger than \(maxFormBytes / 1024) KiB.")
        }
        return parseForm(String(buffer: buffer))
    }

    /// Parses `a=1&b=two+words`; each name's first value, at most 64 fields.
    static func parseForm(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&").prefix(64) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (raw: Substring) in String(raw).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            let name = decode(parts[0])
            if fields[name] == nil { fields[name] = parts.count > 1 ? decode(parts[1]) : "" }
        }
        return fields
    }

    /// A value for a URL's query.
    static func query(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }
}
