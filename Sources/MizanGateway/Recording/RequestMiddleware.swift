import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanCore
import MizanStore
import NIOCore
import NIOHTTP1

/// Runs around every request: gives it a request id (echoing a sane `X-Request-Id`), turns
/// every error into OpenAI's error shape, and once the response body has been written (streams
/// included) logs one line, counts it in the metrics and, for chat completions, records usage.
struct RequestMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext

    let recorder: RequestRecorder

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let requestID = Self.requestID(from: request.headers[.requestID])
        let record = context.record
        record.begin(requestID: requestID)
        var response: Response
        do {
            try Self.checkFraming(request)
            response = try await next(request, context)
        } catch {
            let refusal = mizanError(for: error, request: request, requestID: requestID)
            response = JSONResponse.error(refusal, anthropic: request.uri.path == "/v1" + Endpoint.messages.path)
            if refusal.code == .methodNotAllowed, let methods = Endpoints.methods(forPath: request.uri.path) {
                response.headers[.allow] = methods.map(\.rawValue).joined(separator: ", ")
            }
        }
        response.headers[.requestID] = requestID
        if let servedBy = record.servedBy?.header { response.headers[.mizanServedBy] = servedBy }
        // The gateway's own time until the head: all of it but the waits on an upstream.
        let overhead = max(.zero, ContinuousClock.now - started - record.upstream.total)
        record.headReady(overhead: overhead)
        response.headers[.mizanOverhead] = RequestRecorder.milliseconds(overhead.timeInterval)
        if let priority = record.priority { response.headers[.mizanPriority] = priority.rawValue }
        for (name, value) in record.rateLimitHeaders {
            if let name = Self.rateLimitNames[name] ?? HTTPField.Name(name) { response.headers[name] = value }
        }
        let status = Int(response.status.code)
        let body = response.body
        let recorder = recorder
        let method = request.method.rawValue
        let path = request.uri.path
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            do {
                try await body.write(writer)
            } catch {
                await recorder.finish(method: method, path: path, status: status, started: started, record: record, clientLeft: true)
                throw error
            }
            await recorder.finish(method: method, path: path, status: status, started: started, record: record)
        }
        return response
    }

    /// Whether an error says the client's connection ended (it left mid-body, or closed).
    static func isClientGone(_ error: any Error) -> Bool {
        if error is ChannelError || error is IOError { return true }
        return false
    }

    /// The `x-ratelimit-*` names, made once (a name read from text is checked character by character).
    static let rateLimitNames: [String: HTTPField.Name] = Dictionary(
        uniqueKeysWithValues: ["limit", "remaining", "reset"].flatMap { part in
            ["requests", "tokens"].map { kind in ("x-ratelimit-\(part)-\(kind)", HTTPField.Name("x-ratelimit-\(part)-\(kind)")!) }
        })

    /// The client's request id when it is short and printable, else a new one.
    static func requestID(from header: String?) -> String {
        if let header, !header.isEmpty, header.count <= 128,
            header.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 32 && $0.value < 127 })
        {
            return header
        }
        // A time-ordered id: its bits come from the system generator (Foundation's `UUID()` opens
        // and reads /dev/urandom for each one).
        return TimeOrderedID.text(TimeOrderedID.make())
    }

    /// Refuses transfer codings other than `chunked` (a body the gateway cannot read as sent).
    static func checkFraming(_ request: Request) throws {
        guard let coding = request.headers[.transferEncoding] else { return }
        let codings = coding.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        guard codings == ["chunked"] else {
            throw MizanError(
                .notImplemented,
                "Transfer-Encoding '\(SafeText.excerpt(coding, limit: 64))' is not supported; send the body as is or with 'chunked' alone.")
        }
    }

    private func mizanError(for error: any Error, request: Request, requestID: String) -> MizanError {
        let path = SafeText.excerpt(request.uri.path, limit: 200)
        switch error {
        case let error as MizanError:
            return error
        case let error as any HTTPResponseError:
            switch error.status.code {
            case 404, 405:
                // The router has no such route; a known path with another method is a 405.
                if let methods = Endpoints.methods(forPath: request.uri.path) {
                    let allowed = methods.map(\.rawValue).joined(separator: ", ")
                    return MizanError(
                        .methodNotAllowed,
                        "Method \(SafeText.excerpt(request.method.rawValue, limit: 32)) is not allowed on \(path); use \(allowed).")
                }
                return MizanError(.notFound, "Unknown endpoint: \(SafeText.excerpt(request.method.rawValue, limit: 32)) \(path).")
            case 413: return MizanError(.payloadTooLarge, "The request body is too large.")
            case 400..<500: return MizanError(.badRequest, "Bad request.")
            default: break
            }
        case is CancellationError:
            return MizanError(.cancelled, "The request was cancelled.")
        case let error as HTTPParserError where error == .invalidEOFState:
            // The connection ended mid-body: the client left; nobody reads this answer.
            return MizanError(.cancelled, "The client went away before its body arrived.")
        case is HTTPParserError:
            // Broken framing of the client's body (a bad chunk size, a body cut short).
            return MizanError(.badRequest, "The request body is malformed: \(error).")
        case let error where Self.isClientGone(error):
            // The client left before its body arrived; nobody reads this answer.
            return MizanError(.cancelled, "The client went away.")
        default:
            break
        }
        recorder.logger.error(
            "request failed with an unexpected error",
            metadata: ["mizan.request.id": "\(requestID)", "mizan.error": "\(String(describing: type(of: error)))"]
        )
        return MizanError(.internalError, "The gateway failed to handle the request.")
    }
}
