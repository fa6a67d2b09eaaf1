import Foundation
import Hummingbird
import MizanCore

extension Gateway {
    /// `/healthz` (the process answers), `/readyz` (the store answers) and `/metrics` (Prometheus text).
    func addOperationsRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/healthz") { _, _ in
            HTTPResponses.json(bytes: Data(#"{"status":"ok"}"#.utf8))
        }
        router.get("/readyz") { _, _ in
            do {
                try await self.dispatcher.store.ping()
                return HTTPResponses.json(bytes: Data(#"{"status":"ready"}"#.utf8))
            } catch {
                self.logger.warning("readiness check failed: the store does not answer", metadata: ["mizan.error": "\(error)"])
                throw MizanError(.storeUnavailable, "The store is not reachable.")
            }
        }
        router.get("/openapi.json") { _, _ in
            HTTPResponses.json(bytes: OpenAPIDocument.json)
        }
        router.get("/metrics") { _, _ in
            guard let registry = self.metricsRegistry else {
                throw MizanError(.notFound, "Metrics are not enabled in this gateway.")
            }
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
        }
    }
}
