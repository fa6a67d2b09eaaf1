// MizanDispatch inside an app of your own: a small Hummingbird server whose route turns each
// request into a durable job on an SQLite file, and a worker in the same process that leases the
// jobs as a node would and answers them. Jobs wait in the store, survive a restart, time out at
// their deadline, and go to whichever node (here, the one worker) has a free slot.
//
//   swift run embedded-dispatch --port 8090 --database shout.sqlite
//   curl -s http://127.0.0.1:8090/shout -d 'hello there'     # HELLO THERE
import Foundation
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import MizanStoreSQLite
import ServiceLifecycle

/// A node in this process: heartbeats, leases up to four jobs at a time, and answers each with
/// its text upper-cased.
struct Worker: Service {
    let dispatcher: Dispatcher
    let node: Node
    static let report = NodeReport(models: ["shout"], maxConcurrency: 4)

    func run() async throws {
        // Graceful shutdown cancels the loops: the worker stops leasing (a job it leased and did
        // not report goes back to the queue when the node is next counted lost).
        try? await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    // Without heartbeats the sweeper counts the node lost and requeues its jobs.
                    while true {
                        _ = try await dispatcher.heartbeat(nodeID: node.id, report: Self.report)
                        try await Task.sleep(for: .seconds(5))
                    }
                }
                group.addTask {
                    while true {
                        for leased in try await dispatcher.lease(for: node, limit: 4, wait: .seconds(5)) {
                            let text = String(decoding: leased.job.body, as: UTF8.self)
                            _ = try await dispatcher.complete(leased.lease, result: Data(text.uppercased().utf8), usage: nil)
                        }
                    }
                }
            }
        }
    }
}

let arguments = CommandLine.arguments
func option(_ name: String, _ fallback: String) -> String {
    arguments.firstIndex(of: name).flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil } ?? fallback
}
let logger = Logger(label: "embedded-dispatch")
let store = try await SQLiteStore.open(path: option("--database", "embedded-dispatch.sqlite"))
let dispatcher = Dispatcher(store: store, configuration: .init(defaultDeadline: .seconds(30)))

// The node is enrolled and registered in process (an agent elsewhere would present the
// registration token over your own endpoint, or the gateway's agent API).
let enrollment = try await dispatcher.createNode(name: "worker-\(UUID().uuidString.prefix(8))")
let registration = try await dispatcher.register(registrationToken: enrollment.registrationToken, report: Worker.report)
let worker = Worker(dispatcher: dispatcher, node: registration.node)

let router = Router()
router.post("/shout") { request, _ -> String in
    let body = try await request.body.collect(upTo: 64 * 1024)
    // The route waits for the job's end; a client that leaves cancels it.
    let job = try await dispatcher.submit(DispatchRequest(model: "shout", body: Data(buffer: body)))
    guard job.state == .succeeded, let result = job.result else {
        throw HTTPError(.badGateway, message: "The job ended \(job.state.rawValue): \(job.errorMessage ?? "no result").")
    }
    return String(decoding: result, as: UTF8.self)
}
let app = Application(
    router: router, configuration: .init(address: .hostname("127.0.0.1", port: Int(option("--port", "8090")) ?? 8090)),
    onServerRunning: { channel in logger.info("embedded-dispatch listening on http://127.0.0.1:\(channel.localAddress?.port ?? 0)") },
    logger: logger)
// The store runs first so that it stops last; the sweeper enforces deadlines and requeues.
try await ServiceGroup(
    services: [store, Sweeper(dispatcher: dispatcher), worker, app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger
).run()
