import AsyncHTTPClient
import Foundation
import MizanProvider
import MizanTestSupport
import NIOCore
import NIOHTTP1

/// The admin token the end-to-end gateways run with.
let e2eAdminToken = "e2e-admin-token"

/// Starts `mizan-mock-provider` on a free port; returns the process and its base URL.
func startMock(_ arguments: [String] = []) async throws -> (ChildProcess, String) {
    let child = try ChildProcess("mizan-mock-provider", arguments: ["--port", "0"] + arguments)
    let port = try await child.waitForOutput(#"listening on http://127\.0\.0\.1:(\d+)"#)
    return (child, "http://127.0.0.1:\(port)")
}

/// Starts `mizan-gateway` on a free port with the admin token; returns the process and its URL.
/// Unless told where (`--database-url`, `MIZAN_DATABASE_URL`, or a working directory of its own
/// for the default SQLite file), it keeps its state in memory, so that tests never share a file.
func startGateway(
    _ arguments: [String] = [], environment: [String: String] = [:], workingDirectory: String? = nil
) async throws -> (ChildProcess, String) {
    let told = arguments.contains("--database-url") || environment["MIZAN_DATABASE_URL"] != nil || workingDirectory != nil
    let store = told ? [] : ["--database-url", "memory:"]
    let child = try ChildProcess(
        "mizan-gateway", arguments: ["--port", "0", "--admin-token", e2eAdminToken] + store + arguments, environment: environment,
        workingDirectory: workingDirectory)
    let port = try await child.waitForOutput(#"mizan-gateway listening on http://127\.0\.0\.1:(\d+)"#, timeout: .seconds(60))
    return (child, "http://127.0.0.1:\(port)")
}

/// Writes a routes file and returns its path.
func writeRoutes(_ json: String, ext: String = "json") throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-routes-\(UUID().uuidString).\(ext)")
    try Data(json.utf8).write(to: url)
    return url.path
}

/// Runs the `mizan` CLI to its end.
func mizan(_ arguments: [String], gateway: String, token: String = e2eAdminToken) async throws -> (status: Int32, output: String) {
    let child = try ChildProcess("mizan", arguments: ["--gateway", gateway, "--admin-token", token] + arguments)
    let status = try await child.waitForExit()
    return (status, child.output)
}

/// Creates an API key with the CLI and returns `(id, key)`.
func createKey(gateway: String, name: String = "e2e") async throws -> (id: String, key: String) {
    let (status, output) = try await mizan(["keys", "create", "--name", name, "--json"], gateway: gateway)
    guard status == 0, let json = try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: String],
        let id = json["id"], let key = json["key"]
    else { throw ChildProcessError(message: "keys create failed (\(status)): \(output)") }
    return (id, key)
}

/// Sends one HTTP request over loopback.
func call(
    _ method: HTTPMethod, _ url: String, token: String? = nil, body: String? = nil, headers: [(String, String)] = []
) async throws -> HTTPAnswer {
    try await sendHTTP(method, url, token: token, body: body, headers: headers)
}

/// A chat completion body.
func chatJSON(model: String, stream: Bool = false, content: String = "hello there") -> String {
    #"{"model":"\#(model)","messages":[{"role":"user","content":"\#(content)"}],"stream":\#(stream)}"#
}
