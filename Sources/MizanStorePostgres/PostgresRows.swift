import Foundation
import MizanCore
import MizanStore
import PostgresNIO
import Synchronization

/// Column lists and row decoding shared by the store's statements.
enum Rows {
    static let jobColumns = """
        id, request_id, model, body, stream, state, attempt, max_attempts, priority, node_id, deadline, \
        created_at, leased_at, finished_at, updated_at, result, error_code, error_message, \
        prompt_tokens, completion_tokens, usage_source, idempotency_key, api_key_id, endpoint, lease_history, \
        weight, fair_tag, class_since, preferred_node, preferred_until, affinity
        """

    /// How many columns ``jobColumns`` names (a statement's extra columns come after them).
    static let jobColumnCount = jobColumns.split(separator: ",").count

    /// `jobColumns` qualified by a table alias (built once per alias: statements ask on every call).
    static func jobColumns(_ alias: String) -> String {
        if let known = qualified.withLock({ $0[alias] }) { return known }
        let text = jobColumns.split(separator: ",").map { "\(alias).\($0.trimmingCharacters(in: .whitespaces))" }.joined(separator: ", ")
        qualified.withLock { $0[alias] = text }
        return text
    }

    private static let qualified = Mutex<[String: String]>([:])

    static let nodeColumns =
        "id, name, models, endpoints, max_concurrency, labels, status, health, in_flight, last_seen, disconnected_at, created_at, "
        + "loaded_models"

    static func job(_ row: PostgresRow) throws -> Job {
        let (
            id, requestID, model, body, stream, state, attempt, maxAttempts, priority, nodeID, deadline,
            createdAt, leasedAt, finishedAt, updatedAt, result, errorCode, errorMessage,
            promptTokens, completionTokens, usageSource, idempotencyKey, apiKeyID, endpoint, leaseHistory,
            weight, fairTag, classSince, preferredNode, preferredUntil, affinity
        ) = try row.decode(
            (
                UUID, String, String, Data, Bool, String, Int, Int, Int, UUID?, Date,
                Date, Date?, Date?, Date, Data?, String?, String?,
                Int?, Int?, String?, String?, String?, String, String?,
                Int, Double, Date?, UUID?, Date?, String
            ).self
        )
        guard let parsed = JobState(rawValue: state) else {
            throw MizanError(.internalError, "Unknown job state in the database.", debugDetail: state)
        }
        var job = Job(
            id: JobID(id),
            requestID: requestID,
            model: model,
            endpoint: Endpoint(rawValue: endpoint) ?? .chatCompletions,
            body: body,
            stream: stream,
            deadline: deadline,
            maxAttempts: maxAttempts,
            priority: priority,
            idempotencyKey: idempotencyKey,
            apiKeyID: apiKeyID,
            now: createdAt
        )
        job.state = parsed
        job.attempt = attempt
        job.nodeID = nodeID.map(NodeID.init)
        job.leasedAt = leasedAt
        job.finishedAt = finishedAt
        job.updatedAt = updatedAt
        job.result = result
        job.errorCode = errorCode
        job.errorMessage = errorMessage
        if let promptTokens, let completionTokens {
            let source = usageSource.flatMap(TokenUsage.Source.init(rawValue:)) ?? .provider
            job.usage = TokenUsage(promptTokens: promptTokens, completionTokens: completionTokens, source: source)
        }
        job.earlierAttempts = JobAttempt.parse(leaseHistory)
        job.scheduling = JobScheduling(
            weight: weight, fairTag: fairTag, classSince: classSince, preferredNode: preferredNode.map(NodeID.init),
            preferredUntil: preferredUntil, affinity: JobScheduling.Affinity(rawValue: affinity) ?? .none)
        return job
    }

    static func node(_ row: PostgresRow) throws -> Node {
        let (id, name, models, endpoints, maxConcurrency, labels, status, health, inFlight, lastSeen, disconnectedAt, createdAt, loaded) =
            try row.decode((UUID, String, [String], [String], Int, String, String, String, Int, Date?, Date?, Date, [String]).self)
        return Node(
            id: NodeID(id),
            name: name,
            models: models,
            endpoints: endpoints.compactMap(Endpoint.init(rawValue:)),
            maxConcurrency: maxConcurrency,
            labels: (try? JSONDecoder().decode([String: String].self, from: Data(labels.utf8))) ?? [:],
            status: Node.Status(rawValue: status) ?? .revoked,
            health: Node.Health(rawValue: health) ?? .unknown,
            inFlight: inFlight,
            lastSeen: lastSeen,
            disconnectedAt: disconnectedAt,
            createdAt: createdAt,
            loadedModels: loaded
        )
    }

    /// Appends usage records as the twelve arrays of ``insertUsageArrays(from:)``.
    static func appendUsageArrays(_ records: [UsageRecord], to binds: inout PostgresBindings) {
        binds.append(records.map(\.requestID))
        binds.append(records.map { $0.apiKeyID ?? "" })
        binds.append(records.map(\.model))
        binds.append(records.map { $0.servedBy ?? "" })
        binds.append(records.map(\.status))
        binds.append(records.map(\.latencyMilliseconds))
        binds.append(records.map { $0.usage?.promptTokens ?? -1 })
        binds.append(records.map { $0.usage?.completionTokens ?? -1 })
        binds.append(records.map { $0.usage?.source.rawValue ?? "" })
        binds.append(records.map(\.createdAt))
        binds.append(records.map(\.endpoint.rawValue))
        binds.append(records.map { $0.priority?.rawValue ?? "" })
    }

    /// Inserts usage records (none of an idempotent job: their tokens always count) from the
    /// arrays of ``appendUsageArrays(_:to:)``, bound from `$first` on: one statement text for
    /// any number of records.
    /// - Parameter condition: A condition the rows are inserted under (`WHERE …`), if any.
    static func insertUsageArrays(from first: Int, where condition: String? = nil) -> String {
        let types = ["text", "text", "text", "text", "bigint", "float8", "bigint", "bigint", "text", "timestamptz", "text", "text"]
        let arrays = types.enumerated().map { "$\(first + $0.offset)::\($0.element)[]" }.joined(separator: ", ")
        return """
            INSERT INTO mizan_usage (request_id, api_key_id, model, served_by, status, latency_ms,
                prompt_tokens, completion_tokens, usage_source, created_at, endpoint, priority)
            SELECT r, NULLIF(k, ''), m, NULLIF(s, ''), st, l, NULLIF(p, -1), NULLIF(c, -1), NULLIF(src, ''), t, e, NULLIF(pr, '')
            FROM unnest(\(arrays)) AS u(r, k, m, s, st, l, p, c, src, t, e, pr)
            """ + (condition.map { " WHERE " + $0 } ?? "")
    }

    static func labels(_ labels: [String: String]) -> String {
        String(decoding: (try? JSONEncoder().encode(labels)) ?? Data("{}".utf8), as: UTF8.self)
    }
}

extension PostgresRowSequence {
    /// Collects every row through `transform`.
    public func collect<T>(_ transform: (PostgresRow) throws -> T) async throws -> [T] {
        var out: [T] = []
        for try await row in self { out.append(try transform(row)) }
        return out
    }
}
