import ArgumentParser
import Foundation
import MizanCore

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
                let answer = try await options.client().send(
                    .POST, "/admin/v1/nodes", body: AdminWire.CreateNodeRequest(name: name), as: AdminWire.CreatedNode.self
                )
                if options.json { return try Output.json(answer) }
                print("node \(answer.id) created")
                print("registration token (shown once): \(answer.registrationToken)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List nodes.")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.GET, "/admin/v1/nodes", as: AdminWire.List<Node>.self)
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "NAME", "STATUS", "HEALTH", "MODELS", "IN FLIGHT", "MAX", "LAST SEEN"],
                    answer.data.map { node in
                        [
                            node.id.description, node.name, node.status.rawValue, node.health.rawValue, Output.cell(node.models),
                            String(node.inFlight), String(node.maxConcurrency), Output.cell(node.lastSeen),
                        ]
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
                let answer = try await options.client().send(.DELETE, "/admin/v1/nodes/\(try pathComponent(id))", as: Node.self)
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
                let answer = try await options.client().send(
                    .POST, "/admin/v1/keys", body: AdminWire.CreateKeyRequest(name: name), as: AdminWire.CreatedKey.self
                )
                if options.json { return try Output.json(answer) }
                print("key \(answer.id) created")
                print("API key (shown once): \(answer.key)")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List API keys (never the keys themselves).")
        @OptionGroup var options: GlobalOptions

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.GET, "/admin/v1/keys", as: AdminWire.List<APIKey>.self)
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "NAME", "PREFIX", "CREATED", "REVOKED"],
                    answer.data.map { key in [key.id, key.name, key.prefix, Output.cell(key.createdAt), Output.cell(key.revokedAt)] }
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
                let answer = try await options.client().send(.DELETE, "/admin/v1/keys/\(try pathComponent(id))", as: APIKey.self)
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
                let answer = try await options.client().send(.GET, path, as: AdminWire.List<AdminWire.JobSummary>.self)
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "MODEL", "STATE", "ATTEMPT", "NODE", "CREATED", "ERROR"],
                    answer.data.map { job in
                        [
                            job.id.description, job.model, job.state.rawValue, String(job.attempt), Output.cell(job.nodeID),
                            Output.cell(job.createdAt), Output.cell(job.errorCode),
                        ]
                    }
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
                try Output.json(
                    try await options.client().send(.GET, "/admin/v1/jobs/\(try pathComponent(id))", as: AdminWire.JobSummary.self))
            }
        }
    }
}

struct Usage: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Requests and tokens per API key and model.")
    @OptionGroup var options: GlobalOptions

    func run() async throws {
        try await runCommand {
            let answer = try await options.client().send(.GET, "/admin/v1/usage", as: AdminWire.List<UsageSummary>.self)
            if options.json { return try Output.json(answer) }
            Output.table(
                ["KEY", "MODEL", "REQUESTS", "PROMPT TOKENS", "COMPLETION TOKENS"],
                answer.data.map { row in
                    [Output.cell(row.apiKeyID), row.model, String(row.requests), String(row.promptTokens), String(row.completionTokens)]
                }
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
