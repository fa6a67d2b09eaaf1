import ArgumentParser
import Foundation
import MizanCore

struct Keys: AsyncParsableCommand {
    @OptionGroup var options: GlobalOptions

    static let configuration = CommandConfiguration(
        abstract: "Client API keys: create (prints the key once), list, show, update, revoke.",
        subcommands: [Create.self, List.self, Show.self, Update.self, Revoke.self]
    )

    /// What a key may do, as flags (each optional).
    struct Settings: ParsableArguments {
        @Option(help: "The only models the key may use, comma-separated (others answer 404).") var models: String?
        @Option(help: "Requests per minute.") var rpm: Int?
        @Option(help: "Tokens per minute (counted as requests end).") var tpm: Int?
        @Option(help: "Requests in flight at once.") var concurrency: Int?
        @Option(help: "A token budget per period (with --budget-period).") var budgetTokens: Int?
        @Option(help: "The budget's period: day, month (UTC) or total.") var budgetPeriod: String?
        @Option(help: "When the key stops working: a date (2027-01-01), a time (2027-01-01T12:00:00Z) or from now (30d, 12h).")
        var expires: String?
        @Option(
            help: ArgumentHelp(
                "The class the key's requests queue in for agent nodes: interactive, standard (the default) or batch.",
                discussion: """
                    Nodes lease the highest class first; a waiting request rises one class after the gateway's \
                    --promote-after; a request may lower its own class with the X-Mizan-Priority header.
                    """))
        var priority: String?
        @Option(help: "The key's share among keys of its class while requests wait for nodes, 1 to 100 (default 1).")
        var weight: Int?
        @Option(
            help: "The most of the key's requests that may wait for nodes at once, 1 to 1000000 (default no cap); beyond it, 429 at once.")
        var maxQueued: Int?

        var modelList: [String]? {
            models.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        }

        /// The limits the flags set, on top of `current`.
        func limits(over current: KeyPolicy.Limits?) -> KeyPolicy.Limits? {
            guard rpm != nil || tpm != nil || concurrency != nil else { return current }
            var limits = current ?? KeyPolicy.Limits()
            if let rpm { limits.requestsPerMinute = rpm }
            if let tpm { limits.tokensPerMinute = tpm }
            if let concurrency { limits.concurrentRequests = concurrency }
            return limits
        }

        /// The budget the flags set, on top of `current`.
        func budget(over current: KeyPolicy.Budget?) throws -> KeyPolicy.Budget? {
            guard budgetTokens != nil || budgetPeriod != nil else { return current }
            let period = try budgetPeriod.map { raw -> KeyPolicy.Budget.Period in
                guard let period = KeyPolicy.Budget.Period(rawValue: raw) else {
                    throw ValidationError("--budget-period must be day, month or total.")
                }
                return period
            }
            guard let tokens = budgetTokens ?? current?.tokens, let period = period ?? current?.period else {
                throw ValidationError("A budget needs both --budget-tokens and --budget-period.")
            }
            return KeyPolicy.Budget(tokens: tokens, period: period)
        }

        /// The class the flag names.
        func priorityClass() throws -> PriorityClass? {
            try priority.map { raw in
                guard let priority = PriorityClass(rawValue: raw) else {
                    throw ValidationError("--priority must be \(PriorityClass.names).")
                }
                return priority
            }
        }

        /// The expiry the flag gives.
        func expiry(now: Date = Date()) throws -> Date? {
            guard let expires else { return nil }
            if let last = expires.last, let unit = ["d": 86_400.0, "h": 3_600.0, "m": 60.0][String(last)],
                let count = Double(expires.dropLast()), count > 0
            {
                return now.addingTimeInterval(count * unit)
            }
            if let date = ISO8601Text.date(from: expires, allowingDate: true) { return date }
            throw ValidationError("--expires must be a date (2027-01-01), a time (2027-01-01T12:00:00Z) or from now (30d, 12h).")
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an API key; the key is shown once.")
        @OptionGroup var options: GlobalOptions
        @Option(help: "A name for the key.") var name: String
        @OptionGroup var settings: Settings

        func run() async throws {
            try await runCommand {
                let policy = KeyPolicy(
                    models: settings.modelList, limits: settings.limits(over: nil), budget: try settings.budget(over: nil),
                    expiresAt: try settings.expiry(), priority: try settings.priorityClass(), weight: settings.weight,
                    maxQueued: settings.maxQueued)
                let answer = try await options.client().send(
                    .POST, "/admin/v1/keys", body: AdminWire.CreateKeyRequest(name: name, policy: policy), as: AdminWire.CreatedKey.self
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
                let answer = try await options.client().send(.GET, "/admin/v1/keys", as: AdminWire.List<AdminWire.KeyView>.self)
                if options.json { return try Output.json(answer) }
                Output.table(
                    ["ID", "NAME", "PREFIX", "CREATED", "REVOKED", "LIMITS", "QUEUEING"],
                    answer.data.map { view in
                        let key = view.key
                        return [
                            key.id, key.name, key.prefix, Output.cell(key.createdAt), Output.cell(key.revokedAt), Keys.summary(key.policy),
                            Keys.queueing(key.policy),
                        ]
                    }
                )
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one API key: its settings and where it stands.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The key's id or name.") var id: String

        func run() async throws {
            try await runCommand {
                try Output.json(
                    try await options.client().send(.GET, "/admin/v1/keys/\(try pathComponent(id))", as: AdminWire.KeyView.self))
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change an API key's name or settings; flags left out stay as they are.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The key's id or name.") var id: String
        @Option(help: "A new name.") var name: String?
        @OptionGroup var settings: Settings
        @Option(
            help: """
                Remove a setting: models, limits, budget, expires, priority (back to standard), weight (back to 1) \
                or max-queued (no cap); repeatable.
                """)
        var clear: [String] = []

        func run() async throws {
            try await runCommand {
                let client = try options.client()
                let path = "/admin/v1/keys/\(try pathComponent(id))"
                let current = try await client.send(.GET, path, as: AdminWire.KeyView.self).key.policy
                var patch = KeyUpdate()
                patch.name = name
                for field in clear {
                    guard KeyUpdate.clearable.contains(field) else {
                        throw ValidationError("--clear takes models, limits, budget, expires, priority, weight or max-queued.")
                    }
                    patch.cleared.insert(field)
                }
                patch.models = settings.modelList
                if settings.rpm != nil || settings.tpm != nil || settings.concurrency != nil {
                    patch.limits = settings.limits(over: current.limits)
                }
                if settings.budgetTokens != nil || settings.budgetPeriod != nil { patch.budget = try settings.budget(over: current.budget) }
                patch.expiresAt = try settings.expiry()
                patch.priority = try settings.priorityClass()
                patch.weight = settings.weight
                patch.maxQueued = settings.maxQueued
                let answer = try await client.send(.PATCH, path, body: patch, as: AdminWire.KeyView.self)
                if options.json { return try Output.json(answer) }
                print("key \(id) updated: \(Keys.summary(answer.key.policy)); queueing: \(Keys.queueing(answer.key.policy))")
            }
        }
    }

    /// A `PATCH /admin/v1/keys/{id}` body: the fields set, and `null` for those cleared.
    struct KeyUpdate: Encodable {
        var name: String?
        var models: [String]?
        var limits: KeyPolicy.Limits?
        var budget: KeyPolicy.Budget?
        var expiresAt: Date?
        var priority: PriorityClass?
        var weight: Int?
        var maxQueued: Int?
        var cleared: Set<String> = []

        /// What `--clear` takes.
        static let clearable = ["models", "limits", "budget", "expires", "priority", "weight", "max-queued"]

        private enum CodingKeys: String, CodingKey { case name, models, limits, budget, expiresAt, priority, weight, maxQueued }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encodeIfPresent(name, forKey: .name)
            func field<T: Encodable>(_ value: T?, _ key: CodingKeys, _ flag: String) throws {
                if let value {
                    try container.encode(value, forKey: key)
                } else if cleared.contains(flag) {
                    try container.encodeNil(forKey: key)
                }
            }
            try field(models, .models, "models")
            try field(limits, .limits, "limits")
            try field(budget, .budget, "budget")
            try field(expiresAt, .expiresAt, "expires")
            try field(priority, .priority, "priority")
            try field(weight, .weight, "weight")
            try field(maxQueued, .maxQueued, "max-queued")
        }
    }

    /// A key's settings in a few words, e.g. `models 2, 60 rpm, 8 at once, 1000000 tokens/day`.
    static func summary(_ policy: KeyPolicy) -> String {
        var parts: [String] = []
        if let models = policy.models { parts.append("models \(models.joined(separator: ","))") }
        if let rpm = policy.limits?.requestsPerMinute { parts.append("\(rpm) rpm") }
        if let tpm = policy.limits?.tokensPerMinute { parts.append("\(tpm) tpm") }
        if let concurrency = policy.limits?.concurrentRequests { parts.append("\(concurrency) at once") }
        if let budget = policy.budget { parts.append("\(budget.tokens) tokens/\(budget.period.rawValue)") }
        if let expiresAt = policy.expiresAt { parts.append("expires \(Output.cell(expiresAt))") }
        return parts.isEmpty ? "-" : parts.joined(separator: ", ")
    }

    /// How a key's requests queue for nodes in a few words, e.g. `interactive, weight 4, 100
    /// queued at most`; `standard` for a key without these settings.
    static func queueing(_ policy: KeyPolicy) -> String {
        var parts = [policy.priorityClass.rawValue]
        if let weight = policy.weight { parts.append("weight \(weight)") }
        if let maxQueued = policy.maxQueued { parts.append("\(maxQueued) queued at most") }
        return parts.joined(separator: ", ")
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an API key.")
        @OptionGroup var options: GlobalOptions
        @Argument(help: "The key's id or name.") var id: String

        func run() async throws {
            try await runCommand {
                let answer = try await options.client().send(.DELETE, "/admin/v1/keys/\(try pathComponent(id))", as: APIKey.self)
                if options.json { return try Output.json(answer) }
                print("key \(id) revoked")
            }
        }
    }
}
