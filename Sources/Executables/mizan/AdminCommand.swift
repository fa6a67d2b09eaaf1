import ArgumentParser
import Foundation
import MizanCore

/// `mizan`: the admin CLI, a client of the gateway's admin API.
@main
struct AdminCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mizan",
        abstract: "Administer a Mizan gateway: agent nodes, API keys, jobs, batches and usage.",
        discussion: "Talks to the gateway's admin API with the admin token. Lists print a table, or JSON with --json.",
        version: MizanVersion.current,
        subcommands: [Nodes.self, Keys.self, Jobs.self, Batches.self, Usage.self]
    )

    // Declared here too so the options may come before the subcommand: `mizan --gateway URL keys list`.
    @OptionGroup var options: GlobalOptions
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(help: "The gateway's base URL (env MIZAN_GATEWAY_URL; default http://127.0.0.1:8080).")
    var gateway: String?

    @Option(name: .customLong("admin-token"), help: "The admin token (env MIZAN_ADMIN_TOKEN).")
    var adminToken: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func client() throws -> AdminClient {
        let environment = ProcessInfo.processInfo.environment
        let base = gateway ?? environment["MIZAN_GATEWAY_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:8080"
        guard let url = URL(string: base), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw CLIError("--gateway must be an http(s) URL, got '\(base)'.")
        }
        guard let token = adminToken ?? environment["MIZAN_ADMIN_TOKEN"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw CLIError("No admin token: pass --admin-token or set MIZAN_ADMIN_TOKEN.")
        }
        return AdminClient(baseURL: base.hasSuffix("/") ? String(base.dropLast()) : base, token: token)
    }
}

/// A command's failure: one line on stderr, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body, printing any failure as one line and exiting non-zero.
func runCommand(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let error as CLIError {
        FileHandle.standardError.write(Data("mizan: \(error.description)\n".utf8))
        throw ExitCode.failure
    }
}
