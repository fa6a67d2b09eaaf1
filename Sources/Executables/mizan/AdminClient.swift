import AsyncHTTPClient
import Foundation
import MizanCore
import NIOCore
import NIOHTTP1

/// A small client of the gateway's admin API, speaking ``AdminWire``'s types.
struct AdminClient {
    let baseURL: String
    let token: String

    /// Sends a request and decodes the answer; an error answer becomes a ``CLIError``
    /// carrying the gateway's message.
    func send<Answer: Decodable>(
        _ method: HTTPMethod,
        _ path: String,
        body: (some Encodable)? = String?.none,
        as type: Answer.Type = Answer.self
    ) async throws -> Answer {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let data = try await send(client, method, path, body: body.map { try AgentWire.encoder().encode($0) })
            try await client.shutdown()
            do {
                return try AgentWire.decoder().decode(Answer.self, from: data)
            } catch {
                throw CLIError("the gateway's answer to \(method.rawValue) \(path) is not what this mizan expects: \(error)")
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func send(_ client: HTTPClient, _ method: HTTPMethod, _ path: String, body: Data?) async throws -> Data {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(30))
        } catch {
            throw CLIError("cannot reach the gateway at \(baseURL): \(error)")
        }
        let buffer = try await response.body.collect(upTo: 64 << 20)
        let data = Data(buffer.readableBytesView)
        // A Mizan gateway names itself and answers errors in OpenAI's shape; anything else at
        // that address is not one.
        let isGateway = response.headers.first(name: "Server") == "mizan-gateway"
        guard (200..<300).contains(response.status.code) else {
            let message = (try? JSONDecoder().decode(OpenAIErrorEnvelope.self, from: data))?.error.message
            if let message, isGateway || response.status.code != 404 {
                throw CLIError("\(response.status.code): \(message)")
            }
            if !isGateway {
                throw CLIError(
                    "\(baseURL) does not look like a Mizan gateway (it answered \(response.status.code) to \(method.rawValue) \(path)); "
                        + "check --gateway or MIZAN_GATEWAY_URL."
                )
            }
            throw CLIError("\(response.status.code) from the gateway, with no error message")
        }
        guard isGateway || (try? JSONSerialization.jsonObject(with: data)) != nil else {
            throw CLIError("\(baseURL) does not look like a Mizan gateway (its answer is not JSON); check --gateway or MIZAN_GATEWAY_URL.")
        }
        return data
    }
}

/// Output helpers.
enum Output {
    /// Prints a value as the gateway's JSON, pretty.
    static func json(_ value: some Encodable) throws {
        let encoder = AgentWire.encoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
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

    /// A cell's text: `-` for nothing, dates in ISO 8601, lists joined by commas.
    static func cell(_ value: (any CustomStringConvertible)?) -> String {
        guard let value else { return "-" }
        return value.description
    }

    static func cell(_ date: Date?) -> String {
        guard let date else { return "-" }
        return date.formatted(.iso8601)
    }

    static func cell(_ list: [String]) -> String {
        list.joined(separator: ",")
    }
}
