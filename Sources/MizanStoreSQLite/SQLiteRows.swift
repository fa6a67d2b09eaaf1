import Foundation
import MizanCore
import MizanStore

/// How Mizan's values are written to and read from SQLite.
enum Rows {
    static let jobColumns = """
        id, request_id, model, body, stream, state, attempt, max_attempts, priority, node_id, deadline, created_at, \
        leased_at, finished_at, updated_at, result, error_code, error_message, prompt_tokens, completion_tokens, usage_source, \
        idempotency_key, api_key_id, endpoint
        """

    static let nodeColumns =
        "id, name, models, endpoints, max_concurrency, labels, status, health, in_flight, last_seen, created_at"

    static let keyColumns = "id, name, prefix, created_at, revoked_at"

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

    /// The binds of a new job's columns, in ``jobColumns`` order.
    static func binds(_ job: Job) -> [SQLValue] {
        [
            id(job.id), .text(job.requestID), .text(job.model), blob(job.body), .integer(job.stream ? 1 : 0), .text(job.state.rawValue),
            .integer(job.attempt), .integer(job.maxAttempts), .integer(job.priority), id(job.nodeID), date(job.deadline),
            date(job.createdAt), date(job.leasedAt), date(job.finishedAt), date(job.updatedAt), blob(job.result), text(job.errorCode),
            text(job.errorMessage), integer(job.usage?.promptTokens), integer(job.usage?.completionTokens),
            text(job.usage?.source.rawValue), text(job.idempotencyKey), text(job.apiKeyID), .text(job.endpoint.rawValue),
        ]
    }

    // MARK: Rows

    static func job(_ row: SQLRow) throws -> Job {
        var job = Job(
            id: try jobID(row, "id"),
            requestID: try string(row, "request_id"),
            model: try string(row, "model"),
            endpoint: row.column("endpoint")?.string.flatMap(Endpoint.init(rawValue:)) ?? .chatCompletions,
            body: data(row, "body") ?? Data(),
            stream: (row.column("stream")?.integer ?? 0) != 0,
            deadline: try requiredDate(row, "deadline"),
            maxAttempts: Int(row.column("max_attempts")?.integer ?? 1),
            priority: Int(row.column("priority")?.integer ?? 0),
            idempotencyKey: row.column("idempotency_key")?.string,
            apiKeyID: row.column("api_key_id")?.string,
            now: try requiredDate(row, "created_at")
        )
        guard let state = JobState(rawValue: try string(row, "state")) else { throw corrupt("state") }
        job.state = state
        job.attempt = Int(row.column("attempt")?.integer ?? 1)
        job.nodeID = row.column("node_id")?.string.flatMap(NodeID.init)
        job.leasedAt = date(row, "leased_at")
        job.finishedAt = date(row, "finished_at")
        job.updatedAt = try requiredDate(row, "updated_at")
        job.result = data(row, "result")
        job.errorCode = row.column("error_code")?.string
        job.errorMessage = row.column("error_message")?.string
        if let prompt = row.column("prompt_tokens")?.integer, let completion = row.column("completion_tokens")?.integer {
            let source = row.column("usage_source")?.string.flatMap(TokenUsage.Source.init) ?? .provider
            job.usage = TokenUsage(promptTokens: Int(prompt), completionTokens: Int(completion), source: source)
        }
        return job
    }

    static func node(_ row: SQLRow) throws -> Node {
        guard let id = row.column("id")?.string.flatMap(NodeID.init) else { throw corrupt("node id") }
        let models = (try? JSONDecoder().decode([String].self, from: Data(try string(row, "models").utf8))) ?? []
        let labels = (try? JSONDecoder().decode([String: String].self, from: Data(try string(row, "labels").utf8))) ?? [:]
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
            createdAt: try requiredDate(row, "created_at")
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
            revokedAt: date(row, "revoked_at")
        )
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
