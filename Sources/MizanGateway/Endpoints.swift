import HTTPTypes
import Hummingbird
import MizanCore

/// Every endpoint of the gateway with its methods: the other methods on a known path answer
/// 405 (with `Allow`) instead of 404, and the OpenAPI document is checked against this list.
enum Endpoints {
    /// Paths (Hummingbird's `{parameter}` syntax) and the methods each serves.
    static let all: [(path: String, methods: [HTTPRequest.Method])] = [
        ("/v1/chat/completions", [.post]),
        ("/v1/models", [.get]),
        ("/agent/v1/register", [.post]),
        ("/agent/v1/heartbeat", [.post]),
        ("/agent/v1/lease", [.post]),
        ("/agent/v1/jobs/{id}/complete", [.post]),
        ("/agent/v1/jobs/{id}/fail", [.post]),
        ("/agent/v1/jobs/{id}/stream", [.post]),
        ("/agent/v1/reports", [.post]),
        ("/admin/v1/nodes", [.get, .post]),
        ("/admin/v1/nodes/{id}", [.delete]),
        ("/admin/v1/keys", [.get, .post]),
        ("/admin/v1/keys/{id}", [.delete]),
        ("/admin/v1/jobs", [.get]),
        ("/admin/v1/jobs/{id}", [.get]),
        ("/admin/v1/usage", [.get]),
        ("/healthz", [.get]),
        ("/readyz", [.get]),
        ("/metrics", [.get]),
        ("/openapi.json", [.get]),
    ]

    /// Registers a 405 answer for the methods a known path does not serve.
    static func refuseOtherMethods(on router: Router<GatewayRequestContext>) {
        let methods: [HTTPRequest.Method] = [.get, .post, .put, .patch, .delete]
        for (path, allowed) in all {
            let allow = allowed.map(\.rawValue).joined(separator: ", ")
            for method in methods where !allowed.contains(method) {
                router.on(RouterPath(path), method: method) { request, _ -> Response in
                    var response = HTTPResponses.error(MizanError(
                        .methodNotAllowed, "Method \(request.method.rawValue) is not allowed on \(SafeText.excerpt(request.uri.path)); use \(allow)."
                    ))
                    response.headers[.allow] = allow
                    return response
                }
            }
        }
    }
}
