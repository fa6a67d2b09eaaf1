import Foundation
import MizanCore
import Synchronization

/// Hands the events an agent streams for a job to the client request waiting for them, in
/// this gateway process.
///
/// Each waiting client has a mailbox with a bounded buffer: a writer in this process waits for
/// room (back-pressure: the node's stream waits while the client reads slowly), and events
/// relayed from another instance, which cannot wait, end the stream when it is full.
///
/// A stream belongs to one lease: the first to open it (``claim(_:by:)``). Another attempt of the
/// same job may take it over only while nothing was sent to the client yet; a revoked node's
/// writes are refused (``revoke(node:)``). A client therefore never receives two nodes' outputs
/// in one answer.
final class StreamHub: Sendable {
    /// What a write to a job's mailbox did.
    enum Delivery: Sendable, Equatable {
        /// Delivered (or buffered) for the client.
        case delivered
        /// No client waits for the job here.
        case noClient
        /// The stream belongs to another lease, or the writer's node was revoked.
        case notOwner
    }

    /// The buffered bytes past which a writer waits.
    let bufferBytes: Int

    private let mailboxes = Mutex<[JobID: Mailbox]>([:])

    /// - Parameter bufferBytes: How many bytes of events wait for a client before its writer waits.
    init(bufferBytes: Int = 1 << 20) {
        self.bufferBytes = max(1, bufferBytes)
    }

    /// Starts listening for a job's events.
    func subscribe(_ id: JobID) -> Mailbox {
        let mailbox = Mailbox(limit: bufferBytes) { [weak self] in
            self?.mailboxes.withLock { _ = $0.removeValue(forKey: id) }
        }
        mailboxes.withLock { $0[id] = mailbox }
        return mailbox
    }

    /// Claims a job's stream for `lease`.
    /// - Returns: `.delivered` when the lease may write, `.noClient` when no client waits here,
    ///   `.notOwner` when another lease's output already reached the client.
    func claim(_ id: JobID, by lease: Lease) -> Delivery {
        guard let mailbox = mailboxes.withLock({ $0[id] }) else { return .noClient }
        return mailbox.claim(lease)
    }

    /// Delivers a message to the job's client, waiting for room in its buffer.
    func publish(_ id: JobID, from lease: Lease?, _ message: JobStreamEvent) async -> Delivery {
        guard let mailbox = mailboxes.withLock({ $0[id] }) else { return .noClient }
        return await mailbox.send(message, from: lease)
    }

    /// Delivers a message without waiting (events relayed from another instance, and the
    /// job's end): a buffer four times over its bound ends the stream.
    @discardableResult
    func offer(_ id: JobID, _ message: JobStreamEvent) -> Delivery {
        guard let mailbox = mailboxes.withLock({ $0[id] }) else { return .noClient }
        return mailbox.offer(message)
    }

    /// Refuses every later write of a revoked node's streams.
    func revoke(node: NodeID) {
        for mailbox in mailboxes.withLock({ Array($0.values) }) { mailbox.revoke(node) }
    }

    /// A job's events for its client: a bounded buffer, one reader.
    final class Mailbox: Sendable {
        private struct State {
            var events: [(event: JobStreamEvent, bytes: Int)] = []
            var head = 0
            var bytes = 0
            var reader: CheckedContinuation<JobStreamEvent?, Never>?
            /// Writers waiting for room, by number (a cancelled one takes itself out).
            var writers: [Int: CheckedContinuation<Bool, Never>] = [:]
            var nextWriter = 0
            var finished = false
            /// No writer may add more (the job ended): the reader still gets what is buffered.
            var closedToWriters = false
            var owner: Lease?
            var ownerWrote = false
            /// Output relayed from another instance reached the client: no lease here may join it.
            var relayedWrote = false
            var revoked: Set<NodeID> = []
        }

        private let state = Mutex(State())
        private let limit: Int
        private let onFinish: @Sendable () -> Void

        init(limit: Int, onFinish: @escaping @Sendable () -> Void) {
            self.limit = limit
            self.onFinish = onFinish
        }

        func claim(_ lease: Lease) -> Delivery {
            state.withLock { state in
                if state.finished || state.closedToWriters { return .noClient }
                if state.revoked.contains(lease.nodeID) || state.relayedWrote { return .notOwner }
                if let owner = state.owner, owner != lease, state.ownerWrote { return .notOwner }
                if state.owner != lease {
                    state.owner = lease
                    state.ownerWrote = false
                }
                return .delivered
            }
        }

        /// The node whose lease writes the stream here (`nil` before its first write, or for a
        /// stream relayed from another instance).
        var writer: NodeID? { state.withLock { $0.owner?.nodeID } }

        /// Refuses the node's later writes, and releases its writers that wait for room.
        func revoke(_ node: NodeID) {
            let waiting: [CheckedContinuation<Bool, Never>] = state.withLock { state in
                state.revoked.insert(node)
                guard state.owner?.nodeID == node else { return [] }
                defer { state.writers = [:] }
                return Array(state.writers.values)
            }
            // They try again, and are refused as the revoked node's.
            for writer in waiting { writer.resume(returning: true) }
        }

        /// The job ended: writers get no more room (those waiting are released), while the
        /// reader gets what is buffered and the end.
        func closeToWriters() {
            let waiting: [CheckedContinuation<Bool, Never>] = state.withLock { state in
                state.closedToWriters = true
                defer { state.writers = [:] }
                return Array(state.writers.values)
            }
            for writer in waiting { writer.resume(returning: false) }
        }

        private static func size(_ event: JobStreamEvent) -> Int {
            if case .data(let text) = event { return text.utf8.count }
            return 0
        }

        /// Checks that `lease` may write now (claiming a stream nobody owns yet).
        private static func admits(_ lease: Lease?, _ state: inout State) -> Bool {
            guard let lease else { return true }
            if state.revoked.contains(lease.nodeID) { return false }
            if state.owner == nil { state.owner = lease }
            guard state.owner == lease else { return false }
            state.ownerWrote = true
            return true
        }

        func send(_ event: JobStreamEvent, from lease: Lease?) async -> Delivery {
            let size = Self.size(event)
            while true {
                enum Step {
                    case done(Delivery, CheckedContinuation<JobStreamEvent?, Never>?)
                    case wait
                }
                let step: Step = state.withLock { state in
                    if state.finished || (state.closedToWriters && lease != nil) { return .done(.noClient, nil) }
                    guard Self.admits(lease, &state) else { return .done(.notOwner, nil) }
                    // An event always fits an empty buffer.
                    guard state.bytes == 0 || state.bytes + size <= limit else { return .wait }
                    return .done(.delivered, Self.append(event, size: size, to: &state))
                }
                switch step {
                case .done(let delivery, let reader):
                    if case .delivered = delivery, let reader { reader.resume(returning: take()) }
                    return delivery
                case .wait:
                    let number = state.withLock { state in
                        defer { state.nextWriter += 1 }
                        return state.nextWriter
                    }
                    let proceed: Bool = await withTaskCancellationHandler {
                        await withCheckedContinuation { continuation in
                            let now: Bool? = state.withLock { state in
                                if state.finished || state.closedToWriters || Task.isCancelled { return false }
                                if state.bytes == 0 || state.bytes + size <= limit { return true }
                                state.writers[number] = continuation
                                return nil
                            }
                            if let now { continuation.resume(returning: now) }
                        }
                    } onCancel: {
                        // Only this writer gives up: the client keeps what it was sent.
                        self.state.withLock { $0.writers.removeValue(forKey: number) }?.resume(returning: false)
                    }
                    if !proceed { return .noClient }
                }
            }
        }

        @discardableResult
        func offer(_ event: JobStreamEvent) -> Delivery {
            let size = Self.size(event)
            let (delivery, reader): (Delivery, CheckedContinuation<JobStreamEvent?, Never>?) = state.withLock { state in
                if state.finished { return (.noClient, nil) }
                if size > 0, state.bytes + size > limit * 4 { return (.notOwner, nil) }
                // Another instance's node wrote to the client: no lease here may join it.
                if size > 0 { state.relayedWrote = true }
                return (.delivered, Self.append(event, size: size, to: &state))
            }
            if case .notOwner = delivery {
                // The client reads too slowly for a relayed stream: it ends.
                finish()
                return .noClient
            }
            if let reader { reader.resume(returning: take()) }
            return delivery
        }

        /// Appends an event; returns the waiting reader, if any, to hand it the next event.
        private static func append(
            _ event: JobStreamEvent, size: Int, to state: inout State
        ) -> CheckedContinuation<JobStreamEvent?, Never>? {
            state.events.append((event, size))
            state.bytes += size
            defer { state.reader = nil }
            return state.reader
        }

        /// Takes the next buffered event (waking writers that now fit).
        private func take() -> JobStreamEvent? {
            let (event, writers): (JobStreamEvent?, [CheckedContinuation<Bool, Never>]) = state.withLock { state in
                guard state.head < state.events.count else { return (nil, []) }
                let (event, size) = state.events[state.head]
                state.head += 1
                state.bytes -= size
                if state.head == state.events.count {
                    state.events.removeAll(keepingCapacity: true)
                    state.head = 0
                } else if state.head > 64, state.head * 2 > state.events.count {
                    state.events.removeFirst(state.head)
                    state.head = 0
                }
                defer { state.writers = [:] }
                return (event, Array(state.writers.values))
            }
            for writer in writers { writer.resume(returning: true) }
            return event
        }

        /// The next event, or `nil` once the mailbox is finished.
        func next() async -> JobStreamEvent? {
            await withCheckedContinuation { continuation in
                enum Ready { case take, end, wait }
                let ready: Ready = state.withLock { state in
                    if state.head < state.events.count { return .take }
                    if state.finished { return .end }
                    state.reader = continuation
                    return .wait
                }
                switch ready {
                case .take: continuation.resume(returning: take())
                case .end: continuation.resume(returning: nil)
                case .wait: break
                }
            }
        }

        /// Ends the mailbox: the reader gets what is buffered, then `nil`; writers are refused.
        func finish() {
            let (reader, writers, first): (CheckedContinuation<JobStreamEvent?, Never>?, [CheckedContinuation<Bool, Never>], Bool) =
                state.withLock { state in
                    let first = !state.finished
                    state.finished = true
                    // What is buffered is dropped: nobody reads a finished mailbox's rest.
                    state.events.removeAll()
                    state.head = 0
                    state.bytes = 0
                    defer {
                        state.reader = nil
                        state.writers = [:]
                    }
                    return (state.reader, Array(state.writers.values), first)
                }
            reader?.resume(returning: nil)
            for writer in writers { writer.resume(returning: false) }
            if first { onFinish() }
        }
    }
}
