import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// A small client of the gateway's admin API.
struct AdminClient {
    let baseURL: String
    let token: String

    /// Sends a request and returns the JSON answer; an error answer becomes a ``CLIError``
    /// carrying the gateway's message.
    func send(_ method: HTTPMethod, _ path: String, body: [String: String]? = nil) async throws -> Any {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let result = try await send(client, method, path, body: body)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func send(_ client: HTTPClient, _ method: HTTPMethod, _ path: String, body: [String: String]?) async throws -> Any {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(30))
        } catch {
            throw CLIError("cannot reach the gateway at \(baseURL): \(error)")
        }
        let buffer = try await response.body.collect(upTo: 64 << 20)
        let data = Data(buffer.readableBytesView)
        let json = try? JSONSerialization.jsonObject(with: data)
        // A Mizan gateway names itself and answers errors in OpenAI's shape; anything else at
        // that address is not one.
        let isGateway = response.headers.first(name: "Server") == "mizan-gateway"
        guard (200..<300).contains(response.status.code) else {
            let message = ((json as? [String: Any])?["error"] as? [String: Any])?["message"] as? String
            if let message, isGateway || response.status.code != 404 {
                throw CLIError("\(response.status.code): \(message)")
            }
            if !isGateway {
                throw CLIError("\(baseURL) does not look like a Mizan gateway (it answered \(response.status.code) to \(method.rawValue) \(path)); check --gateway or MIZAN_GATEWAY_URL.")
            }
            throw CLIError("\(response.status.code) from the gateway, with no error message")
        }
        guard let json else {
            throw CLIError(isGateway ? "the gateway sent an answer that is not JSON" : "\(baseURL) does not look like a Mizan gateway (its answer is not JSON); check --gateway or MIZAN_GATEWAY_URL.")
        }
        return json
    }
}

/// Output helpers.
enum Output {
    /// Prints a JSON value.
    static func json(_ value: Any) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }

    /// Prints rows under a header, columns padded.
    static func table(_ header: [String], _ rows: [[String]]) {
        let widths = header.indices.map { column in
            ([header[column]] + rows.map { column < $0.count ? $0[column] : "" }).map(\.count).max() ?? 0
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        print(line(header))
        for row in rows { print(line(row)) }
    }

    /// The `data` list of an admin answer.
    static func list(_ value: Any) -> [[String: Any]] {
        ((value as? [String: Any])?["data"] as? [[String: Any]]) ?? []
    }

    /// A cell's text.
    static func cell(_ value: Any?) -> String {
        switch value {
        case nil, is NSNull: "-"
        case let string as String: string
        case let array as [Any]: array.map { cell($0) }.joined(separator: ",")
        case let number as NSNumber: number.stringValue
        default: "\(value!)"
        }
    }
}
