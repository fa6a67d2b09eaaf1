import Foundation
import Logging
import MizanCore
import MizanStore

/// A counted key's admissions, opened and ended in one place: a request is admitted in the
/// store (exact across instances) before any byte of its answer, and its admission ends once
/// the answer has been written — with its usage record where there is one (one statement), by
/// itself otherwise. What the store does not take waits in the usage spool.
struct Admissions: Sendable {
    let access: any AccessStore
    /// Where an end or a record that failed waits to be written again.
    let spool: UsageSpool
    let metrics: GatewayMetrics
    let logger: Logger

    /// Admits a request of a counted key.
    /// - Parameters:
    ///   - key: The key.
    ///   - deadline: The request's deadline (its hold lapses a little after it, should this
    ///     gateway die first).
    ///   - reserve: The tokens it reserves until it ends.
    ///   - record: Where the request keeps the admission and its `x-ratelimit-*` headers.
    /// - Throws: The key's refusal (429), or `storeUnavailable` while usage cannot be counted.
    func open(_ key: APIKey, deadline: Duration, reserve: Int, record: RequestRecord) async throws {
        // A counted key's tokens must be counted: not while the store does not take usage.
        guard !spool.isFull else {
            metrics.refusal(reason: "usage_spool_full")
            throw MizanError(
                .storeUnavailable, "The gateway cannot count this API key's usage right now (its store does not answer); try again shortly."
            )
        }
        // Short: a key's holds are written on every change of its counters (unique enough
        // among one key's requests in flight).
        let holdID = String(IDRandom.next(), radix: 36)
        let holdUntil = Date().addingTimeInterval(deadline.timeInterval + 30)
        let admittedAt = Date()
        switch try await access.admit(key, holdID: holdID, holdUntil: holdUntil, now: admittedAt, reserve: reserve) {
        case .admitted(let holdID, let status):
            record.limits(
                headers: status.headers, admission: KeyAdmissionEnd(key: key, holdID: holdID, reserved: reserve, admittedAt: admittedAt))
        case .refused(let refusal):
            metrics.refusal(reason: refusal.reason.rawValue)
            record.limits(headers: refusal.status.headers)
            throw refusal.error
        }
    }

    /// Stores a finished request's usage record and ends its admission with it (its hold
    /// released, its tokens counted: the record's figure), queued before the connection reads
    /// the client's next request where the store can.
    /// - Parameters:
    ///   - admission: The request's admission, if its key is counted.
    ///   - record: Its usage record.
    func end(_ admission: KeyAdmissionEnd?, recording record: UsageRecord) async {
        do {
            if let admission {
                // Written with the key's next change where the store can (an idempotent job's
                // record the store writes at once): the connection reads the client's next
                // request at once, and its admission goes in the same statement.
                let spool = spool
                try await access.recordUsageSoon(record, ending: admission) { failure in
                    spool.add(UsageSpool.Item.left(after: failure, record: record, ending: admission))
                }
            } else {
                try await access.recordUsage(record, ending: nil)
            }
        } catch {
            logger.warning(
                "usage record not stored yet; spooled to be written again",
                metadata: ["mizan.request.id": "\(record.requestID)", "mizan.error": "\(error)"])
            spool.add(UsageSpool.Item.left(after: error, record: record, ending: admission))
        }
    }

    /// Ends an admission that no usage record ends (a request for no known model).
    /// - Parameters:
    ///   - admission: The admission.
    ///   - requestID: The request's id, for the log.
    func end(_ admission: KeyAdmissionEnd, requestID: String) async {
        do {
            try await access.finish(
                admission.key, holdID: admission.holdID, tokens: 0, reserved: admission.reserved, admittedAt: admission.admittedAt,
                now: Date())
        } catch {
            logger.warning(
                "a limited key's request could not be counted yet; spooled",
                metadata: ["mizan.request.id": "\(requestID)", "mizan.error": "\(error)"])
            spool.add(.end(admission, tokens: 0, requestID: requestID))
        }
    }
}
