import Foundation
import MizanTestSupport
import Testing

/// Schemathesis (property-based API testing from the OpenAPI document) against a real gateway:
/// every operation of every API with its own credential, valid and invalid inputs, the
/// stateful links of the admin API. Checks: no 5xx, statuses, content types, headers and
/// bodies as documented, invalid input refused, valid input accepted, 405 for other methods,
/// authentication enforced.
@Suite("schemathesis against a real gateway")
struct SchemathesisTests {
    /// A fixed seed keeps CI repeatable; `MIZAN_SCHEMATHESIS_SEED` explores others.
    static var seed: String { ProcessInfo.processInfo.environment["MIZAN_SCHEMATHESIS_SEED"] ?? "20261202" }
    static var examples: String { ProcessInfo.processInfo.environment["MIZAN_SCHEMATHESIS_EXAMPLES"] ?? "60" }

    @Test func everyOperationHoldsToTheDocument() async throws {
        let python = try await TestPython.python(requiring: ["openai", "schemathesis"])
        let schemathesis = python.deletingLastPathComponent().appendingPathComponent("schemathesis")
        let (mock, mockURL) = try await startMock()
        defer { _ = mock }
        let routes = try writeRoutes(#"{"routes":[{"model":"routed","baseURL":"\#(mockURL)/v1","upstreamModel":"mock-model"}]}"#)
        // Lease calls answer at once, so a run is not spent waiting on long-polls.
        let (gateway, url) = try await startGateway(["--routes", routes, "--max-lease-wait", "0"])
        defer { _ = gateway }
        let (_, key) = try await createKey(gateway: url, name: "schemathesis")
        let registration = try await createNode(gateway: url, name: "schemathesis-node")
        let register = try await call(
            .POST, "\(url)/agent/v1/register", token: registration,
            body: #"{"report":{"models":["m"],"maxConcurrency":2,"health":"healthy","inFlight":0,"labels":{}}}"#)
        let nodeToken = try #require((register.json["nodeToken"] as? String), "\(register.text)")
        let spare = try await createNode(gateway: url, name: "schemathesis-registration")

        let runs: [(name: String, paths: String, token: String, phases: String)] = [
            ("client", "^/(v1/|healthz|readyz|metrics|openapi)", key, "examples,coverage,fuzzing"),
            ("admin", "^/admin/", e2eAdminToken, "examples,coverage,fuzzing,stateful"),
            ("agent", "^/agent/v1/(heartbeat|lease|jobs|reports)", nodeToken, "examples,coverage,fuzzing"),
            ("registration", "^/agent/v1/register", spare, "examples,coverage,fuzzing"),
        ]
        for run in runs {
            let child = try ChildProcess(
                executable: schemathesis,
                arguments: [
                    "--config-file", TestPython.packageRoot.appendingPathComponent("Tests/sdk/schemathesis.toml").path,
                    "run", "\(url)/openapi.json",
                    "--header", "Authorization: Bearer \(run.token)",
                    "--include-path-regex", run.paths,
                    "--phases", run.phases,
                    "--checks", "all",
                    "--max-examples", Self.examples,
                    "--seed", Self.seed,
                    "--request-timeout", "20",
                    "--generation-database", "none",
                    "--no-color",
                ], environment: ["SCHEMATHESIS_HOOKS": ""])
            let status = try await child.waitForExit(timeout: .seconds(300))
            let summary = child.output.split(separator: "\n").filter {
                $0.contains("generated") || $0.hasPrefix("=====") && $0.contains(" in ")
            }
            print("schemathesis \(run.name): \(summary.joined(separator: " | "))")
            #expect(status == 0, "schemathesis \(run.name) failed:\n\(child.output.suffix(6000))")
            #expect(child.output.contains(" passed"), "\(child.output.suffix(2000))")
        }
        #expect(!gateway.output.contains(" error "), "the gateway logged errors:\n\(gateway.output.suffix(3000))")
    }
}
