import Foundation
import Hummingbird
import MizanCore

/// Reads request bodies: whole and bounded in size and time, and decoded from JSON with
/// errors that name the field.
enum BodyReader {
    static let decoder = AgentWire.decoder()

    /// Reads a whole request body, refusing more than `limit` bytes with 413 and a body still
    /// arriving after `timeout` with 408 (a body that stops arriving altogether is ended by the
    /// connection's idle timeout).
    static func collect(_ body: RequestBody, limit: Int, timeout: Duration = .seconds(60)) async throws -> Data {
        let until = ContinuousClock.now + timeout
        var data = Data()
        for try await buffer in body {
            guard data.count + buffer.readableBytes <= limit else {
                throw MizanError(.payloadTooLarge, "The request body is larger than the limit of \(limit) bytes.")
            }
            guard ContinuousClock.now < until else {
                throw MizanError(.requestTimeout, "The request body did not arrive within \(timeout.timeInterval) seconds.")
            }
            data.append(contentsOf: buffer.readableBytesView)
        }
        return data
    }

    /// Decodes a small JSON body (admin and agent calls).
    static func decode<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = 1 << 20) async throws -> T {
        let data = try await collect(request.body, limit: limit)
        return try decode(type, from: data)
    }

    /// Decodes JSON bytes, turning decoding failures into a 400 that names the field.
    static func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        do {
            return try decoder.decode(type, from: data)
        } catch let error as MizanError {
            throw error
        } catch let DecodingError.keyNotFound(key, _) {
            throw MizanError(.badRequest, "Missing required parameter: '\(key.stringValue)'.")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw MizanError(.badRequest, "Invalid type for '\(path(context))'.")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw MizanError(.badRequest, "Invalid value for '\(path(context))'.")
        } catch {
            // Foundation reports a number that does not fit its field as invalid JSON.
            if (try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])) != nil {
                throw MizanError(
                    .badRequest,
                    "The request body has a value of the wrong form (a number out of range, or a fraction where an integer belongs).")
            }
            throw MizanError(.badRequest, "The request body is not valid JSON.")
        }
    }

    private static func path(_ context: DecodingError.Context) -> String {
        context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
