import ArgumentParser
import Foundation
import MizanCore

/// `mizan batches …`: every key's batches of the Batch API, through the admin API.
struct Batches: AsyncParsableCommand {
    @OptionGroup var options: GlobalOptions

    static let configuration = CommandConfiguration(
        abstract: "Batches of the Batch API, of every key: list, show one, cancel one.",
        discussion: """
            A client creates a batch with POST /v1/batches from a file it uploaded; its lines run as class-batch jobs on \
            agent nodes, and lines still waiting near the end of the batch's window go to provider routes. These commands \
            read every key's batches with the admin token; the API key's own view is /v1/batches.
            """,
        subcommands: [List.self, Show.self, Cancel.self]
    )

    /// A batch object as the admin API answers it: OpenAI's fields and Mizan's own
    /// (`mizan_served`, `mizan_key`). Times are Unix seconds.
    struct BatchObject: Codable {
        /// Its line counts.
        struct Counts: Codable {
            /// Its lines.
            var total: Int
            /// Lines answered.
            var completed: Int
            /// Lines that failed, expired or were cancelled.
            var failed: Int
        }

        /// Where its lines ran.
        struct Served: Codable {
            /// Lines served by agent nodes.
            var nodes: Int
            /// Lines served by provider routes.
            var routes: Int
        }

        /// Why it failed or stopped early.
        struct Errors: Codable {
            /// One reason.
            struct Item: Codable {
                /// A stable code (`budget_exhausted` …).
                var code: String
                /// What happened.
                var message: String
                /// The input line concerned, if one.
                var line: Int?
            }

            /// The reasons.
            var data: [Item]
        }

        /// `batch_…`.
        var id: String
        /// `batch`.
        var object: String?
        /// The endpoint every line calls (`/v1/chat/completions`).
        var endpoint: String
        /// Why it failed or stopped early.
        var errors: Errors?
        /// The uploaded input file.
        var input_file_id: String
        /// `24h`.
        var completion_window: String?
        /// Where it stands (`in_progress` …).
        var status: String
        /// Its answers, once written.
        var output_file_id: String?
        /// Its failures, once written.
        var error_file_id: String?
        /// When it was created.
        var created_at: Int
        /// When its lines started.
        var in_progress_at: Int?
        /// When its window closes.
        var expires_at: Int?
        /// When its last line ended.
        var finalizing_at: Int?
        /// When it completed.
        var completed_at: Int?
        /// When it failed.
        var failed_at: Int?
        /// When it expired.
        var expired_at: Int?
        /// When a client asked to cancel it.
        var cancelling_at: Int?
        /// When it was cancelled.
        var cancelled_at: Int?
        /// Its line counts.
        var request_counts: Counts
        /// The client's metadata.
        var metadata: [String: String]?
        /// Where its lines ran.
        var mizan_served: Served?
        /// The key that made it (its id).
        var mizan_key: String?
    }

    /// A page of batches: `{"object":"list","data":[…],"first_id","last_id","has_more"}`.
    struct Page: Codable {
        /// `list`.
        var object: String?
        /// The batches, newest first.
        var data: [BatchObject]
        /// The first batch's id.
        var first_id: String?
        /// The last batch's id (`--after` of the next page).
        var last_id: String?
        /// Whether older batches remain.
        var has_more: Bool
    }

    /// A Unix time as ISO 8601, `-` for none.
    static func time(_ seconds: Int?) -> String {
        Output.cell(seconds.map { Date(timeIntervalSince1970: TimeInterval($0)) })
    }

    /// `ended / total` lines.
    static func progress(_ counts: BatchObject.Counts) -> String {
        "\(counts.completed + counts.failed)/\(counts.total)"
    }

    /// Where the lines ran: `3 nodes, 1 routes`.
    static func served(_ served: BatchObject.Served?) -> String {
        served.map { "\($0.nodes) nodes, \($0.routes) routes" } ?? "-"
    }

    /// Every field of a batch, one per line, for people.
    static func describe(_ batch: BatchObject) {
        var rows: [(String, String)] = [
            ("id", batch.id), ("status", batch.status), ("key", Output.cell(batch.mizan_key)), ("endpoint", batch.endpoint),
            ("input file", batch.input_file_id), ("output file", Output.cell(batch.output_file_id)),
            ("error file", Output.cell(batch.error_file_id)),
            (
                "lines",
                "\(batch.request_counts.total) total, \(batch.request_counts.completed) completed, \(batch.request_counts.failed) failed"
            ),
            ("served by", served(batch.mizan_served)), ("created", time(batch.created_at)), ("in progress", time(batch.in_progress_at)),
            ("finalizing", time(batch.finalizing_at)), ("completed", time(batch.completed_at)), ("failed", time(batch.failed_at)),
            ("expired", time(batch.expired_at)), ("cancelling", time(batch.cancelling_at)), ("cancelled", time(batch.cancelled_at)),
            ("window closes", time(batch.expires_at)),
        ]
        for (name, value) in (batch.metadata ?? [:]).sorted(by: { $0.key < $1.key }) { rows.append(("metadata \(name)", value)) }
        for error in batch.errors?.data ?? [] {
            rows.append(("error", "\(error.code): \(error.message)" + (error.line.map { " (line \($0))" } ?? "")))
        }
        let width = rows.map(\.0.count).max() ?? 0
        for (name, value) in rows { print(name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value) }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List batches of every key, newest first.",
            discussion: """
                PROGRESS counts the lines ended (completed + failed) of the total; SERVED BY says how many ran on agent nodes \
                and how many on provider routes. With --json, has_more and last_id tell whether an older page exists; pass \
                last_id as --after to read it.
                """)
        @OptionGroup var options: GlobalOptions
        @Option(help: "One API key's batches (its id).") var key: String?
        @Option(help: "At most this many (1-1000).") var limit = 100
        @Option(help: "Batches older than this batch id (the last_id of a previous page).") var after: String?

        func validate() throws {
            guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1-1000.") }
        }

        func run() async throws {
            try await runCommand {
                var path = "/admin/v1/batches?limit=\(limit)"
                if let key { path += "&key=\(try pathComponent(key))" }
                if let after { path += "&after=\(try pathComponent(after))" }
                let answer = try await options.client().send(.GET, path, as: Page.self)
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "KEY", "STATUS", "PROGRESS", "COMPLETED", "FAILED", "SERVED BY", "CREATED"],
                    answer.data.map { batch in
                        [
                            batch.id, Output.cell(batch.mizan_key), batch.status, Batches.progress(batch.request_counts),
                            String(batch.request_counts.completed), String(batch.request_counts.failed), Batches.served(batch.mizan_served),
                            Batches.time(batch.created_at),
                        ]
                    }
                )
                if answer.has_more, let last = answer.last_id { print("(more: --after \(last))") }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show one batch: its status, files, line counts, where its lines ran, its times and errors.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The batch id (batch_…).") var id: String

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.GET, "/admin/v1/batches/\(try pathComponent(id))", as: BatchObject.self)
                if options.json { return try Output.json(answer) }
                Batches.describe(answer)
            }
        }
    }

    struct Cancel: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a batch: its running lines finish, the rest do not start.",
            discussion: """
                The batch turns cancelling, then cancelled once its running lines end; what finished is in its output file. \
                A batch that has ended already is refused (409).
                """)
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The batch id (batch_…).") var id: String

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(
                    .POST, "/admin/v1/batches/\(try pathComponent(id))/cancel", as: BatchObject.self)
                if options.json { return try Output.json(answer) }
                print("batch \(answer.id) \(answer.status)")
            }
        }
    }
}
