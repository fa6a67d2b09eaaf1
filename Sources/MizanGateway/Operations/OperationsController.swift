import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import Prometheus

/// What an operator's tooling probes: `/healthz` (the process answers), `/readyz` (the store
/// answers), `/metrics` (Prometheus text) and `/openapi.json`.
struct OperationsController: Sendable {
    let dispatcher: Dispatcher
    let spool: UsageSpool
    let metricsRegistry: PrometheusCollectorRegistry?
    let logger: Logger

    func addRoutes(to router: RouterGroup<GatewayRequestContext>) {
        router.get("/healthz") { _, _ in
            JSONResponse.json(bytes: Data(#"{"status":"ok"}"#.utf8))
        }
        router.get("/readyz") { _, _ in
            guard !spool.isFull else {
                logger.warning("readiness check failed: the usage spool is full", metadata: ["mizan.spooled": "\(spool.pending)"])
                throw MizanError(
                    .storeUnavailable, "The store has not taken usage for a while: \(spool.pending) usage writes wait to be stored.")
            }
            do {
                try await dispatcher.ping()
                return JSONResponse.json(bytes: Data(#"{"status":"ready"}"#.utf8))
            } catch {
                logger.warning("readiness check failed: the store does not answer", metadata: ["mizan.error": "\(error)"])
                throw MizanError(.storeUnavailable, "The store is not reachable.")
            }
        }
        router.get("/openapi.json") { _, _ in
            JSONResponse.json(bytes: OpenAPIDocument.json)
        }
        router.get("/metrics") { _, _ in
            guard let registry = metricsRegistry else {
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
