import Foundation
import MizanCore
import MizanStore
import NIOCore
import PostgresNIO

extension PostgresStore {
    /// Applies every success of the batch in one statement (one round trip, one commit);
    /// failures, which may requeue, go one by one.
    public func complete(_ completions: [LeaseCompletion], now: Date) async throws -> [Result<Job, MizanError>] {
        var results = [Result<Job, MizanError>?](repeating: nil, count: completions.count)
        var successes: [(index: Int, lease: Lease, result: Data, usage: TokenUsage?)] = []
        for (index, item) in completions.enumerated() {
            if case .succeeded(let result, let usage) = item.completion {
                successes.append((index, item.lease, result, usage))
            }
        }
        if !successes.isEmpty {
            let applied = try await client.prepared(
                BatchSuccess.self,
                """
                WITH input AS (
                    SELECT * FROM unnest(
                        \(successes.map(\.lease.jobID.uuid))::uuid[], \(successes.map(\.lease.attempt))::bigint[],
                        \(successes.map(\.lease.nodeID.uuid))::uuid[], \(successes.map { ByteBuffer(bytes: $0.result) })::bytea[],
                        \(successes.map { $0.usage?.promptTokens ?? -1 })::bigint[],
                        \(successes.map { $0.usage?.completionTokens ?? -1 })::bigint[],
                        \(successes.map { $0.usage?.source.rawValue ?? "" })::text[]
                    ) AS t(id, attempt, node_id, result, prompt, completion, source)
                ), upd AS (
                    UPDATE mizan_jobs j SET state = 'succeeded', result = i.result,
                        prompt_tokens = NULLIF(i.prompt, -1), completion_tokens = NULLIF(i.completion, -1),
                        usage_source = NULLIF(i.source, ''), finished_at = \(now), updated_at = \(now)
                    FROM input i
                    WHERE j.id = i.id AND j.attempt = i.attempt AND j.node_id = i.node_id
                        AND j.state IN (\(unescaped: JobStateMachine.sqlSources(of: .succeed)))
                    RETURNING \(unescaped: Rows.jobColumns("j")), j.origin
                ), dec AS (
                    UPDATE mizan_nodes n SET leased = n.leased - c.count
                    FROM (SELECT node_id, count(*) AS count FROM upd GROUP BY node_id) c
                    WHERE n.id = c.node_id
                )
                SELECT \(unescaped: Rows.jobColumns), origin FROM upd
                """,
                logger: logger
            ) { row in (try Rows.job(row), try row.makeRandomAccess()[Rows.jobColumnCount].decode(String?.self)) }
            var byID = Dictionary(applied.map { ($0.0.id, $0) }, uniquingKeysWith: { a, _ in a })
            var events: [StoreEvent] = []
            var remote: [StoreEvent] = []
            for success in successes {
                if let (job, origin) = byID.removeValue(forKey: success.lease.jobID) {
                    results[success.index] = .success(job)
                    let event = StoreEvent.jobFinished(id: job.id, state: job.state)
                    events.append(event)
                    if origin != self.origin { remote.append(event) }
                }
            }
            publishLocally(events)
            try await notify(remote)
        }
        for (index, item) in completions.enumerated() where results[index] == nil {
            do {
                results[index] = .success(try await complete(item.lease, with: item.completion, now: now))
            } catch let error as MizanError {
                results[index] = .failure(error)
            }
        }
        return results.map { $0! }
    }
}

private enum BatchSuccess {}
