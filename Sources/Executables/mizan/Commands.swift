import ArgumentParser
import Foundation

struct Nodes: AsyncParsableCommand {
    @OptionGroup var options: GlobalOptions

    static let configuration = CommandConfiguration(
        abstract: "Agent nodes: create (prints a one-time registration token), list, revoke.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a node; its registration token is shown once.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "A name for the node.") var name: String

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.POST, "/admin/v1/nodes", body: ["name": name]) as? [String: Any] ?? [:]
                if options.json {
                    try Output.json(["id": answer["id"] ?? "", "registrationToken": answer["registrationToken"] ?? ""])
                } else {
                    print("node \(Output.cell(answer["id"])) created")
                    print("registration token (shown once): \(Output.cell(answer["registrationToken"]))")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List nodes.")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.GET, "/admin/v1/nodes")
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "NAME", "STATUS", "HEALTH", "MODELS", "IN FLIGHT", "MAX", "LAST SEEN"],
                    Output.list(answer).map { node in
                        ["id", "name", "status", "health", "models", "inFlight", "maxConcurrency", "lastSeen"].map { Output.cell(node[$0]) }
                    }
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a node: its token stops working and its jobs are requeued.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The node id.") var id: String

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.DELETE, "/admin/v1/nodes/\(try pathComponent(id))")
                if options.json { return try Output.json(answer) }
                print("node \(id) revoked")
            }
        }
    }
}

struct Keys: AsyncParsableCommand {
    @OptionGroup var options: GlobalOptions

    static let configuration = CommandConfiguration(
        abstract: "Client API keys: create (prints the key once), list, revoke.",
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API key; the key is shown once.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "A name for the key.") var name: String

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.POST, "/admin/v1/keys", body: ["name": name]) as? [String: Any] ?? [:]
                if options.json {
                    try Output.json(["id": answer["id"] ?? "", "key": answer["key"] ?? ""])
                } else {
                    print("key \(Output.cell(answer["id"])) created")
                    print("API key (shown once): \(Output.cell(answer["key"]))")
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List API keys (never the keys themselves).")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.GET, "/admin/v1/keys")
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "NAME", "PREFIX", "CREATED", "REVOKED"],
                    Output.list(answer).map { key in ["id", "name", "prefix", "createdAt", "revokedAt"].map { Output.cell(key[$0]) } }
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an API key.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The key id.") var id: String

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.DELETE, "/admin/v1/keys/\(try pathComponent(id))")
                if options.json { return try Output.json(answer) }
                print("key \(id) revoked")
            }
        }
    }
}

struct Jobs: AsyncParsableCommand {
    @OptionGroup var options: GlobalOptions

    static let configuration = CommandConfiguration(
        abstract: "Dispatch jobs: list by state, show one.",
        subcommands: [List.self, Show.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List jobs, newest first.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "accepted, leased, succeeded, failed or timed_out.") var state: String?
        @Option(help: "At most this many (1-1000).") var limit = 100

        func run() async throws {
            try await runCommand {
                var path = "/admin/v1/jobs?limit=\(limit)"
                if let state { path += "&state=\(try pathComponent(state))" }
                let answer = try await options.client().send(.GET, path)
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "MODEL", "STATE", "ATTEMPT", "NODE", "CREATED", "ERROR"],
                    Output.list(answer).map { job in ["id", "model", "state", "attempt", "nodeID", "createdAt", "errorCode"].map { Output.cell(job[$0]) } }
                )
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one job.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The job id.") var id: String

        func run() async throws {
            try await runCommand {
                try Output.json(try await options.client().send(.GET, "/admin/v1/jobs/\(try pathComponent(id))"))
            }
        }
    }
}

struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Requests and tokens per API key and model.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await runCommand {
            let answer = try await options.client().send(.GET, "/admin/v1/usage")
            if options.json { return try Output.json(answer) }
            Output.table(
                ["KEY", "MODEL", "REQUESTS", "PROMPT TOKENS", "COMPLETION TOKENS"],
                Output.list(answer).map { row in ["apiKeyID", "model", "requests", "promptTokens", "completionTokens"].map { Output.cell(row[$0]) } }
            )
        }
    }
}

/// An id safe to put in a URL path.
func pathComponent(_ text: String) throws -> String {
    guard !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
        throw CLIError("'\(text)' is not a valid id.")
    }
    return text
}
