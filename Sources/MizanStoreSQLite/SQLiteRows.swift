import Foundation
import MizanCore
import MizanStore

/// How Mizan's values are written to and read from SQLite.
enum Rows {
    /// A job's columns, in the order ``jobColumns`` selects them.
    static let jobNames = [
        "id", "request_id", "model", "body", "stream", "state", "attempt", "max_attempts", "priority", "node_id", "deadline",
        "created_at", "leased_at", "finished_at", "updated_at", "result", "error_code", "error_message", "prompt_tokens",
        "completion_tokens", "usage_source", "idempotency_key", "api_key_id", "endpoint", "lease_history", "weight", "fair_tag",
        "class_since", "preferred_node", "preferred_until", "affinity",
    ]

    /// Where a job row's id, class and tag are among ``jobNames`` (for a lease's headroom).
    static let idPosition = jobNames.firstIndex(of: "id")!
    static let priorityPosition = jobNames.firstIndex(of: "priority")!
    static let fairTagPosition = jobNames.firstIndex(of: "fair_tag")!

    /// A job's row as a statement on `mizan_jobs` selects or returns it: its body from its own
    /// table, where it is written once (the job's row is rewritten at every transition).
    static let jobColumns = jobNames.map { $0 == "body" ? "(SELECT body FROM mizan_job_bodies WHERE job = seq) AS body" : $0 }
        .joined(separator: ", ")

    /// The columns of `mizan_jobs` a new job is inserted with (all but its body), in ``insertBinds(_:)`` order.
    static let insertNames = jobNames.filter { $0 != "body" }

    /// What a requeue appends to `lease_history`: the attempt that ends (its number, lease time
    /// in seconds since 1970 — the columns hold seconds since 2001 —, node), when (`?end`) and
    /// why (`?why`), as ``JobAttempt`` reads it. Columns are read before the update, as SQL does.
    static func historyAppend(end: String, why: String) -> String {
        "COALESCE(lease_history, '') || attempt || ',' || COALESCE(leased_at + 978307200, '') || ',' || COALESCE(node_id, '') || ',' || "
            + "\(end) || ',' || \(why) || ';'"
    }

    static let nodeColumns =
        "id, name, models, endpoints, max_concurrency, labels, status, health, in_flight, last_seen, disconnected_at, created_at, "
        + "loaded_models"

    static let keyColumns = "id, name, prefix, created_at, revoked_at, policy"

    // MARK: Binds

    static func text(_ value: String?) -> SQLValue { value.map { .text($0) } ?? .null }
    static func integer(_ value: Int?) -> SQLValue { value.map { .integer($0) } ?? .null }
    static func date(_ value: Date?) -> SQLValue { value.map { .float($0.timeIntervalSinceReferenceDate) } ?? .null }
    static func blob(_ value: Data?) -> SQLValue { value.map { .blob($0) } ?? .null }
    static func id(_ value: JobID) -> SQLValue { .text(value.description) }
    static func id(_ value: NodeID?) -> SQLValue { value.map { .text($0.description) } ?? .null }

    static func json(_ value: some Encodable) -> SQLValue {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("null".utf8)
        return .text(String(decoding: data, as: UTF8.self))
    }

    /// The binds of a new job's columns but its body, in ``insertNames`` order.
    static func insertBinds(_ job: Job) -> [SQLValue] {
        [
            id(job.id), .text(job.requestID), .text(job.model), .integer(job.stream ? 1 : 0), .text(job.state.rawValue),
            .integer(job.attempt), .integer(job.maxAttempts), .integer(job.priority), id(job.nodeID), date(job.deadline),
            date(job.createdAt), date(job.leasedAt), date(job.finishedAt), date(job.updatedAt), blob(job.result), text(job.errorCode),
            text(job.errorMessage), integer(job.usage?.promptTokens), integer(job.usage?.completionTokens),
            text(job.usage?.source.rawValue), text(job.idempotencyKey), text(job.apiKeyID), .text(job.endpoint.rawValue),
            job.earlierAttempts.isEmpty ? .null : .text(job.earlierAttempts.map(\.storedText).joined()),
            .integer(job.scheduling.weight), .float(job.scheduling.fairTag), date(job.scheduling.classSince),
            id(job.scheduling.preferredNode), date(job.scheduling.preferredUntil), .text(job.scheduling.affinity.rawValue),
        ]
    }

    // MARK: Rows

    /// The jobs of rows of one statement: read by position when the statement's columns start
    /// with ``jobColumns`` (checked once, not per row), else by name.
    static func jobs(_ rows: [SQLRow]) throws -> [Job] {
        guard let first = rows.first else { return [] }
        if first.columnNames.starts(with: jobNames) { return try rows.map { row in try job { row[position: $0] } } }
        return try rows.map(job)
    }

    static func job(_ row: SQLRow) throws -> Job {
        if row.columnNames.starts(with: jobNames) { return try job { row[position: $0] } }
        return try job { row.column(jobNames[$0]) }
    }

    /// A job from the values of ``jobColumns``, each asked for by its position in that list.
    private static func job(_ value: (Int) -> SQLValue?) throws -> Job {
        func text(_ position: Int) throws -> String {
            guard let text = value(position)?.string else { throw corrupt(jobNames[position]) }
            return text
        }
        func date(_ position: Int) -> Date? { value(position)?.double.map { Date(timeIntervalSinceReferenceDate: $0) } }
        func requiredDate(_ position: Int) throws -> Date {
            guard let date = date(position) else { throw corrupt(jobNames[position]) }
            return date
        }
        func data(_ position: Int) -> Data? {
            guard let found = value(position), !found.isNull else { return nil }
            return found.blob ?? found.string.map { Data($0.utf8) }
        }
        guard let id = value(0)?.string.flatMap(JobID.init) else { throw corrupt("id") }
        // A body is never NULL: a job's row without one lost its row in `mizan_job_bodies`.
        guard let body = data(3) else { throw corrupt("body") }
        var job = Job(
            id: id,
            requestID: try text(1),
            model: try text(2),
            endpoint: value(23)?.string.flatMap(Endpoint.init(rawValue:)) ?? .chatCompletions,
            body: body,
            stream: (value(4)?.integer ?? 0) != 0,
            deadline: try requiredDate(10),
            maxAttempts: Int(value(7)?.integer ?? 1),
            priority: Int(value(8)?.integer ?? 0),
            idempotencyKey: value(21)?.string,
            apiKeyID: value(22)?.string,
            now: try requiredDate(11)
        )
        guard let state = JobState(rawValue: try text(5)) else { throw corrupt("state") }
        job.state = state
        job.attempt = Int(value(6)?.integer ?? 1)
        job.nodeID = value(9)?.string.flatMap(NodeID.init)
        job.leasedAt = date(12)
        job.finishedAt = date(13)
        job.updatedAt = try requiredDate(14)
        job.result = data(15)
        job.errorCode = value(16)?.string
        job.errorMessage = value(17)?.string
        if let prompt = value(18)?.integer, let completion = value(19)?.integer {
            let source = value(20)?.string.flatMap(TokenUsage.Source.init) ?? .provider
            job.usage = TokenUsage(promptTokens: Int(prompt), completionTokens: Int(completion), source: source)
        }
        job.earlierAttempts = JobAttempt.parse(value(24)?.string)
        job.scheduling = JobScheduling(
            weight: Int(value(25)?.integer ?? 1), fairTag: value(26)?.double ?? 0, classSince: date(27),
            preferredNode: value(28)?.string.flatMap(NodeID.init), preferredUntil: date(29),
            affinity: value(30)?.string.flatMap(JobScheduling.Affinity.init(rawValue:)) ?? .none)
        return job
    }

    static func node(_ row: SQLRow) throws -> Node {
        guard let id = row.column("id")?.string.flatMap(NodeID.init) else { throw corrupt("node id") }
        let models = (try? JSONDecoder().decode([String].self, from: Data(try string(row, "models").utf8))) ?? []
        let labels = (try? JSONDecoder().decode([String: String].self, from: Data(try string(row, "labels").utf8))) ?? [:]
        let loaded = row.column("loaded_models")?.string.flatMap { try? JSONDecoder().decode([String].self, from: Data($0.utf8)) } ?? []
        return Node(
            id: id,
            name: try string(row, "name"),
            models: models,
            endpoints: endpoints(row.column("endpoints")?.string),
            maxConcurrency: Int(row.column("max_concurrency")?.integer ?? 1),
            labels: labels,
            status: Node.Status(rawValue: try string(row, "status")) ?? .revoked,
            health: Node.Health(rawValue: try string(row, "health")) ?? .unknown,
            inFlight: Int(row.column("in_flight")?.integer ?? 0),
            lastSeen: date(row, "last_seen"),
            disconnectedAt: date(row, "disconnected_at"),
            createdAt: try requiredDate(row, "created_at"),
            loadedModels: loaded
        )
    }

    /// A node's endpoints from their JSON list (names this build does not know are left out).
    static func endpoints(_ json: String?) -> [Endpoint] {
        guard let json, let names = try? JSONDecoder().decode([String].self, from: Data(json.utf8)) else { return [.chatCompletions] }
        return names.compactMap(Endpoint.init(rawValue:))
    }

    /// A node's endpoints as their JSON list.
    static func endpoints(_ endpoints: [Endpoint]) -> SQLValue { json(endpoints.map(\.rawValue)) }

    static func apiKey(_ row: SQLRow) throws -> APIKey {
        APIKey(
            id: try string(row, "id"),
            name: try string(row, "name"),
            prefix: try string(row, "prefix"),
            createdAt: try requiredDate(row, "created_at"),
            revokedAt: date(row, "revoked_at"),
            policy: try policy(row.column("policy")?.string)
        )
    }

    /// A key's policy from its stored JSON.
    static func policy(_ json: String?) throws -> KeyPolicy {
        guard let json else { return KeyPolicy() }
        do {
            return try JSONDecoder.iso8601.decode(KeyPolicy.self, from: Data(json.utf8))
        } catch {
            throw corrupt("policy")
        }
    }

    /// A key's policy as its stored JSON.
    static func policy(_ policy: KeyPolicy) -> SQLValue {
        .text(String(decoding: (try? JSONEncoder.iso8601.encode(policy)) ?? Data("{}".utf8), as: UTF8.self))
    }

    // MARK: Columns

    static func string(_ row: SQLRow, _ name: String) throws -> String {
        guard let value = row.column(name)?.string else { throw corrupt(name) }
        return value
    }

    static func jobID(_ row: SQLRow, _ name: String) throws -> JobID {
        guard let id = row.column(name)?.string.flatMap(JobID.init) else { throw corrupt(name) }
        return id
    }

    static func date(_ row: SQLRow, _ name: String) -> Date? {
        row.column(name)?.double.map { Date(timeIntervalSinceReferenceDate: $0) }
    }

    static func requiredDate(_ row: SQLRow, _ name: String) throws -> Date {
        guard let date = date(row, name) else { throw corrupt(name) }
        return date
    }

    static func data(_ row: SQLRow, _ name: String) -> Data? {
        guard let value = row.column(name), !value.isNull else { return nil }
        if let data = value.blob { return data }
        return value.string.map { Data($0.utf8) }
    }

    static func corrupt(_ column: String) -> MizanError {
        MizanError(.storeUnavailable, "The SQLite store holds a row it cannot read (column \(column)).")
    }
}

extension JSONEncoder {
    /// Dates as ISO 8601 text, keys sorted: how policies are stored.
    static var iso8601: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}

extension JSONDecoder {
    /// Dates as ISO 8601 text: how policies are stored.
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
