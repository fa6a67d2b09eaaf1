import Foundation
import HTTPTypes
import MizanTestSupport
import NIOHTTP1
import Testing

@testable import MizanGateway

@Suite("The OpenAPI document and the real router")
struct OpenAPITests {
    /// (method, path) of every operation in the document.
    static func documented() throws -> Set<String> {
        let document = try #require(try JSONSerialization.jsonObject(with: OpenAPIDocument.json) as? [String: Any])
        #expect(document["openapi"] as? String == "3.1.0")
        let paths = try #require(document["paths"] as? [String: [String: Any]])
        var operations = Set<String>()
        for (path, item) in paths {
            for method in item.keys where ["get", "post", "put", "patch", "delete"].contains(method) {
                operations.insert("\(method.uppercased()) \(path)")
            }
        }
        return operations
    }

    @Test func documentsExactlyTheRoutedEndpoints() throws {
        let routed = Set(Endpoints.all.flatMap { endpoint in endpoint.methods.map { "\($0.rawValue) \(endpoint.path)" } })
        let documented = try Self.documented()
        #expect(documented.subtracting(routed).isEmpty, "documented but not routed: \(documented.subtracting(routed).sorted())")
        #expect(routed.subtracting(documented).isEmpty, "routed but not documented: \(routed.subtracting(documented).sorted())")
    }

    @Test func everyDocumentedOperationReachesAHandler() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            for operation in try Self.documented().sorted() {
                let parts = operation.split(separator: " ", maxSplits: 1)
                let path = String(parts[1]).replacingOccurrences(of: "{id}", with: UUID().uuidString.lowercased())
                let token = path.hasPrefix("/admin/") ? Harness.adminToken : gateway.apiKey
                let method = HTTPMethod(rawValue: String(parts[0]))
                // sendHTTP asks again when an early answer closed the connection mid-body.
                let answer = try await gateway.send(
                    method, path + (path.hasSuffix("/stream") ? "?attempt=1" : ""), token: token,
                    body: method == .GET || method == .DELETE ? nil : "{}")
                #expect(answer.status != 405, "\(operation): \(answer.text)")
                #expect(
                    !(answer.status == 404 && answer.errorMessage?.hasPrefix("Unknown endpoint") == true), "\(operation): \(answer.text)")
            }
            // And a method the document does not name on a known path is refused with 405.
            let wrong = try await gateway.send(.DELETE, "/v1/models", token: gateway.apiKey)
            #expect(wrong.status == 405 && wrong.headers["Allow"].first == "GET")
        }
    }

    @Test func servesTheDocumentAsJSON() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let answer = try await gateway.send(.GET, "/openapi.json")
            #expect(answer.status == 200)
            #expect(answer.body == OpenAPIDocument.json)
        }
        // Docs/openapi.yaml is the embedded document.
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Docs/openapi.yaml")
        #expect(try String(contentsOf: docs, encoding: .utf8) == OpenAPIDocument.yaml)
    }
}
