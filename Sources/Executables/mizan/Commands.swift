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
                let answer = try await options.client().send(.GET, "/admin/v1/nodes", as: AdminWire.List<AdminWire.NodeEntry>.self)
                if options.json { return try Output.json(answer) }
                // The condition is the gateway's (the console and /metrics say the same).
                Output.table(
                    ["ID", "NAME", "CONDITION", "MODELS", "IN FLIGHT", "MAX", "LAST SEEN"],
                    answer.data.map { entry in
                        let node = entry.node
                        return [
                            node.id.description, node.name, entry.condition.rawValue, Output.cell(node.models),
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
    static let configuration = CommandConfiguration(
        abstract: "Requests and tokens per API key, model and endpoint; filtered by time, key or model, grouped as asked.")
    @OptionGroup var options: GlobalOptions
    @Option(help: "Records at or after this time or UTC date (2027-01-01, 2027-01-01T12:00:00Z).") var since: String?
    @Option(help: "Records before this time or UTC date.") var until: String?
    @Option(help: "One API key's records (its id).") var key: String?
    @Option(help: "One model's records.") var model: String?
    @Option(help: "Group by these, comma-separated: key, model, endpoint, day, hour (UTC).") var groupBy: String?

    func run() async throws {
        try await runCommand {
            var query: [(String, String)] = []
            for (name, value) in [("since", since), ("until", until), ("key", key), ("model", model), ("groupBy", groupBy)] {
                if let value { query.append((name, value)) }
            }
            let path =
                "/admin/v1/usage"
                + (query.isEmpty
                    ? ""
                    : "?"
                        + query.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(
                            separator: "&"))
            let answer = try await options.client().send(.GET, path, as: AdminWire.List<UsageRow>.self)
            if options.json { return try Output.json(answer) }
            let grouping = groupBy.map { $0.split(separator: ",").map(String.init) } ?? ["key", "model", "endpoint"]
            var header: [String] = []
            if grouping.contains("hour") || grouping.contains("day") { header.append("PERIOD") }
            if grouping.contains("key") { header.append("KEY") }
            if grouping.contains("model") { header.append("MODEL") }
            if grouping.contains("endpoint") { header.append("ENDPOINT") }
            Output.table(
                header + ["REQUESTS", "PROMPT TOKENS", "COMPLETION TOKENS"],
                answer.data.map { row in
                    var cells: [String] = []
                    if header.contains("PERIOD") { cells.append(Output.cell(row.period)) }
                    if header.contains("KEY") { cells.append(Output.cell(row.apiKeyID)) }
                    if header.contains("MODEL") { cells.append(Output.cell(row.model)) }
                    if header.contains("ENDPOINT") { cells.append(Output.cell(row.endpoint?.rawValue)) }
                    return cells + [String(row.requests), String(row.promptTokens), String(row.completionTokens)]
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
