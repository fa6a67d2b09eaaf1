import Foundation
import Logging
import Metrics
import MizanCore
import MizanStore
import ServiceLifecycle
import Synchronization

/// Usage records and ends of counted keys' admissions whose write failed (a database restart, a
/// locked SQLite file), kept in memory and written again, oldest first, with backoff until the
/// store takes them: a blip of the store delays usage, it never drops it, and budgets count
/// every token served meanwhile. It is flushed when the gateway stops (for a bounded time).
///
/// It is bounded: past ``capacity`` waiting items the gateway is not ready (`/readyz` says so)
/// and refuses new requests of counted keys with 503 rather than serve them uncounted; past
/// twice that, a new item is dropped and logged (requests already admitted can still end).
///
/// A write whose answer was lost after it committed (the connection broke at that moment) is
/// found before it is written again (its record, by request id and time), so that it counts once.
final class UsageSpool: Service, Sendable {
    /// One write to repeat.
    enum Item: Sendable {
        /// A usage record, with the end of its key's admission when the key is counted; `atomic`
        /// when the store writes the two together or not at all.
        case record(UsageRecord, ending: KeyAdmissionEnd?, atomic: Bool = false)
        /// The end of a counted key's admission, counting `tokens` (its record is stored, or it has none).
        case end(KeyAdmissionEnd, tokens: Int, requestID: String)

        /// What is left to write after `error` failed the write of `record` ending `admission`.
        static func left(after error: any Error, record: UsageRecord, ending admission: KeyAdmissionEnd?) -> Item {
            guard let failure = error as? UsageWriteFailure else { return .record(record, ending: admission) }
            if let admission, let stored = failure.underlying as? AdmissionEndFailure {
                return .end(admission, tokens: stored.counted ? record.tokens : 0, requestID: record.requestID)
            }
            return .record(record, ending: failure.admissionEnded ? nil : admission, atomic: failure.atomic)
        }
    }

    /// Items waiting past which the gateway refuses counted keys' requests (10,000).
    let capacity: Int
    private let access: any AccessStore
    private let logger: Logger
    private let shutdownFlush: Duration
    private struct State {
        var items: [Item] = []
        var head = 0
        var waiter: CheckedContinuation<Void, Never>?
        var announcedFull = false
    }
    private let state = Mutex(State())
    private let pendingGauge = Gauge(label: "mizan_gateway_usage_spooled")

    init(access: any AccessStore, capacity: Int = 10_000, shutdownFlush: Duration = .seconds(10), logger: Logger) {
        self.access = access
        self.capacity = max(1, capacity)
        self.shutdownFlush = shutdownFlush
        self.logger = logger
    }

    /// Items waiting to be written.
    var pending: Int { state.withLock { $0.items.count - $0.head } }

    /// Whether the spool holds as many items as it should: counted keys are refused meanwhile.
    var isFull: Bool { pending >= capacity }

    /// Keeps a write that failed, to repeat it.
    func add(_ item: Item) {
        let (waiter, count, announce): (CheckedContinuation<Void, Never>?, Int?, Bool) = state.withLock { state in
            let count = state.items.count - state.head
            guard count < capacity * 2 else { return (nil, nil, false) }
            state.items.append(item)
            var announce = false
            if count + 1 >= capacity, !state.announcedFull {
                state.announcedFull = true
                announce = true
            }
            defer { state.waiter = nil }
            return (state.waiter, count + 1, announce)
        }
        guard let count else {
            logger.error("the usage spool is over its bound; a usage record is lost", metadata: Self.metadata(item))
            return
        }
        pendingGauge.record(count)
        if announce {
            logger.error(
                "the usage spool is full: the store has not taken usage for a while; requests of counted keys get 503 until it does",
                metadata: ["mizan.spooled": "\(count)"])
        }
        waiter?.resume()
    }

    /// Writes what waits until the gateway stops, then flushes for a bounded time.
    func run() async throws {
        await cancelWhenGracefulShutdown { await self.drain(forever: true) }
        if pending > 0 {
            logger.info("writing the spooled usage before stopping", metadata: ["mizan.spooled": "\(pending)"])
            try? await withTimeLimit(shutdownFlush, timeoutError: { CancellationError() }) { await self.drain(forever: false) }
            if pending > 0 { logger.error("usage records could not be stored before stopping", metadata: ["mizan.lost": "\(pending)"]) }
        }
    }

    /// Writes the items in order, backing off while the store fails; with `forever`, waits for
    /// more until cancelled.
    private func drain(forever: Bool) async {
        var backoff = Duration.milliseconds(100)
        while !Task.isCancelled {
            guard let item = state.withLock({ $0.head < $0.items.count ? $0.items[$0.head] : nil }) else {
                guard forever else { return }
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let now = state.withLock { state in
                            if state.head < state.items.count || Task.isCancelled { return true }
                            state.waiter = continuation
                            return false
                        }
                        if now { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLock { state in
                        defer { state.waiter = nil }
                        return state.waiter
                    }?.resume()
                }
                continue
            }
            do {
                try await write(item)
                backoff = .milliseconds(100)
                let count = state.withLock { state in
                    state.head += 1
                    if state.head == state.items.count {
                        state.items.removeAll(keepingCapacity: true)
                        state.head = 0
                    } else if state.head > 1024, state.head * 2 > state.items.count {
                        state.items.removeFirst(state.head)
                        state.head = 0
                    }
                    let count = state.items.count - state.head
                    if count < capacity { state.announcedFull = false }
                    return count
                }
                pendingGauge.record(count)
                if count == 0 { logger.info("the spooled usage is stored") }
            } catch {
                logger.warning(
                    "the store does not take usage yet; retrying",
                    metadata: ["mizan.spooled": "\(pending)", "mizan.retry_in": "\(backoff)", "mizan.error": "\(error)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
    }

    private func write(_ item: Item) async throws {
        switch item {
        case .record(let record, let ending, let atomic):
            // A write whose answer was lost may have been stored: writing it again would count it
            // twice (and settle a reservation twice). Where the store writes a record and its end
            // together, the end is stored too; else only the end is left to write.
            if try await access.usageRecorded(requestID: record.requestID, createdAt: record.createdAt) {
                if let ending, !atomic {
                    let end = Item.end(ending, tokens: record.tokens, requestID: record.requestID)
                    replaceHead(with: end)
                    try await write(end)
                }
                return
            }
            do {
                try await access.recordUsage(record, ending: ending)
            } catch {
                // What is left of it (the record alone once the admission ended) waits its turn again.
                replaceHead(with: Item.left(after: error, record: record, ending: ending))
                throw error
            }
        case .end(let ending, let tokens, _):
            try await access.finish(
                ending.key, holdID: ending.holdID, tokens: tokens, reserved: ending.reserved, admittedAt: ending.admittedAt, now: Date())
        }
    }

    private func replaceHead(with item: Item) {
        state.withLock { state in
            if state.head < state.items.count { state.items[state.head] = item }
        }
    }

    private static func metadata(_ item: Item) -> Logger.Metadata {
        switch item {
        case .record(let record, _, _): ["mizan.request.id": "\(record.requestID)"]
        case .end(_, _, let requestID): ["mizan.request.id": "\(requestID)"]
        }
    }
}
