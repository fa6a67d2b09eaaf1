import HTTPTypes
import Hummingbird
import MizanCore

/// Every endpoint of the gateway with its methods: the other methods on a known path answer
/// 405 (with `Allow`) instead of 404, and the OpenAPI document is checked against this list.
enum Endpoints {
    /// Paths (Hummingbird's `{parameter}` syntax) and the methods each serves.
    /// The inference endpoints come from `Endpoint` itself, as the client routes do.
    static let all: [(path: String, methods: [HTTPRequest.Method])] =
        Endpoint.allCases.map { ("/v1" + $0.path, [.post]) } + [
            ("/v1/models", [.get]),
            ("/v1/files", [.get, .post]),
            ("/v1/files/{id}", [.get, .delete]),
            ("/v1/files/{id}/content", [.get]),
            ("/v1/batches", [.get, .post]),
            ("/v1/batches/{id}", [.get]),
            ("/v1/batches/{id}/cancel", [.post]),
            ("/v1/responses/{id}", [.get]),
            ("/v1/responses/{id}/cancel", [.post]),
            ("/agent/v1/register", [.post]),
            ("/agent/v1/heartbeat", [.post]),
            ("/agent/v1/goodbye", [.post]),
            ("/agent/v1/lease", [.post]),
            ("/agent/v1/jobs/{id}/complete", [.post]),
            ("/agent/v1/jobs/{id}/fail", [.post]),
            ("/agent/v1/jobs/{id}/stream", [.post]),
            ("/agent/v1/reports", [.post]),
            ("/agent/v1/channel", [.post]),
            ("/admin/v1/nodes", [.get, .post]),
            ("/admin/v1/nodes/{id}", [.delete]),
            ("/admin/v1/keys", [.get, .post]),
            ("/admin/v1/keys/{id}", [.get, .patch, .delete]),
            ("/admin/v1/jobs", [.get]),
            ("/admin/v1/jobs/{id}", [.get]),
            ("/admin/v1/usage", [.get]),
            ("/admin/v1/batches", [.get]),
            ("/admin/v1/batches/{id}", [.get]),
            ("/admin/v1/batches/{id}/cancel", [.post]),
            ("/healthz", [.get]),
            ("/readyz", [.get]),
            ("/metrics", [.get]),
            ("/openapi.json", [.get]),
        ]

    /// The methods a known path serves, or `nil` when no endpoint has that path.
    /// - Parameter path: A request's path (without the query).
    static func methods(forPath path: String) -> [HTTPRequest.Method]? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        for (pattern, methods) in all {
            let expected = pattern.split(separator: "/", omittingEmptySubsequences: false)
            guard expected.count == segments.count else { continue }
            let matches = zip(expected, segments).allSatisfy { want, got in
                want.hasPrefix("{") ? !got.isEmpty : want == got
            }
            if matches { return methods }
        }
        return nil
    }
}
