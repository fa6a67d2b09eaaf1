import AsyncHTTPClient
import Foundation
import MizanProvider
import NIOCore
import NIOHTTP1

/// An HTTP answer as tests look at it.
public struct HTTPAnswer: Sendable {
    /// The status code.
    public var status: Int
    /// The headers.
    public var headers: HTTPHeaders
    /// The whole body.
    public var body: Data

    /// An answer as read.
    public init(status: Int, headers: HTTPHeaders, body: Data) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The body as text.
    public var text: String { String(decoding: body, as: UTF8.self) }
    /// The body as a JSON object (empty when it is not one).
    public var json: [String: Any] { ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]) ?? [:] }
    /// The OpenAI error code, when the answer is an error.
    public var errorCode: String? { (json["error"] as? [String: Any])?["code"] as? String }
    /// The OpenAI error type, when the answer is an error.
    public var errorType: String? { (json["error"] as? [String: Any])?["type"] as? String }
    /// The OpenAI error message, when the answer is an error.
    public var errorMessage: String? { (json["error"] as? [String: Any])?["message"] as? String }
}

/// Sends one HTTP request (over loopback) and reads the whole answer.
/// - Parameters:
///   - method: The method.
///   - url: The full URL.
///   - token: A bearer credential.
///   - body: A JSON body.
///   - headers: More headers.
///   - timeout: Limit for the response head.
public func sendHTTP(
    _ method: HTTPMethod,
    _ url: String,
    token: String? = nil,
    body: String? = nil,
    headers: [(String, String)] = [],
    timeout: TimeAmount = .seconds(30)
) async throws -> HTTPAnswer {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
    for (name, value) in headers { request.headers.add(name: name, value: value) }
    if let body {
        // JSON unless the caller names another type (a form).
        if !request.headers.contains(name: "Content-Type") { request.headers.add(name: "Content-Type", value: "application/json") }
        request.body = .bytes(ByteBuffer(string: body))
    }
    // An answer sent before the body was read closes the connection (by design, so that an
    // oversized or unauthorized upload is not read); a client still writing its body can see
    // the close instead of the answer. Ask again, a bounded number of times, only then.
    var attempt = 0
    while true {
        do {
            let response = try await ProviderClient.shared.httpClient.execute(request, timeout: timeout)
            let buffer = try await response.body.collect(upTo: 64 << 20)
            return HTTPAnswer(status: Int(response.status.code), headers: response.headers, body: Data(buffer.readableBytesView))
        } catch  where body != nil && attempt < 4 && isEarlyClose(error) {
            attempt += 1
        }
    }
}

/// Whether an error is the server closing a connection while the client still wrote to it.
private func isEarlyClose(_ error: any Error) -> Bool {
    if let error = error as? ChannelError, error == .ioOnClosedChannel || error == .outputClosed || error == .eof { return true }
    if let error = error as? HTTPClientError, error == .remoteConnectionClosed { return true }
    if let error = error as? IOError, error.errnoCode == EPIPE || error.errnoCode == ECONNRESET { return true }
    return false
}

/// A loopback port nothing listens on, for as long as the test process runs: it is bound and
/// never listened on (a connection is refused at once), so no other test's server can take it
/// meanwhile, as one can take a port that was merely free a moment ago.
public func deadPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else {
        close(fd)
        throw CancellationError()
    }
    // Deliberately left open: the process's exit closes it.
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A loopback port that was free a moment ago.
public func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw CancellationError() }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Starts a streaming request, reads its first bytes, then drops the connection (a client
/// that goes away mid-stream).
/// - Parameters:
///   - url: The full URL.
///   - token: The bearer credential.
///   - body: The JSON body (with `"stream": true`).
public func abandonStream(_ url: String, token: String, body: String) async throws {
    let (started, startedContinuation) = AsyncStream<Void>.makeStream()
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Authorization", value: "Bearer \(token)")
    request.headers.add(name: "Content-Type", value: "application/json")
    request.body = .bytes(ByteBuffer(string: body))
    let reader = Task {
        let response = try await ProviderClient.shared.httpClient.execute(request, timeout: .seconds(30))
        for try await _ in response.body { startedContinuation.yield() }
    }
    for await _ in started { break }
    reader.cancel()
    _ = await reader.result
}
