import MizanCore
import MizanStore
import Synchronization

/// The submitters waiting for their job to finish and the nodes waiting for work,
/// woken by store events. Waking happens outside the lock.
final class Waiters: Sendable {
    private struct State {
        var finish: [JobID: [ObjectIdentifier: Signal]] = [:]
        var available: [String: [ObjectIdentifier: Signal]] = [:]
        /// Jobs that finished on this instance while someone here waited for them.
        var finished: [JobID: Job] = [:]
        /// Submitters waiting for a job of each model (woken when no node can serve it).
        var capacity: [String: [ObjectIdentifier: Signal]] = [:]
        /// Models with waiting submitters that no node can serve now (set by the sweeper).
        var orphaned: Set<String> = []
    }

    private let state = Mutex(State())

    func handle(_ event: StoreEvent) {
        let signals: [Signal]
        switch event {
        case .jobFinished(let id, _):
            signals = state.withLock { $0.finish[id].map { Array($0.values) } ?? [] }
        case .jobsAvailable(let model, _):
            signals = state.withLock { $0.available[model].map { Array($0.values) } ?? [] }
        case .resync:
            signals = state.withLock { state in
                state.finish.values.flatMap(\.values) + state.available.values.flatMap(\.values)
            }
        case .streamed:
            signals = []
        }
        for signal in signals { signal.signal() }
    }

    func waitForFinish(of id: JobID, _ signal: Signal) {
        state.withLock { $0.finish[id, default: [:]][ObjectIdentifier(signal)] = signal }
    }

    func stopWaitingForFinish(of id: JobID, _ signal: Signal) {
        state.withLock { state in
            state.finish[id]?[ObjectIdentifier(signal)] = nil
            if state.finish[id]?.isEmpty == true { state.finish[id] = nil }
            if state.finish[id] == nil { state.finished[id] = nil }
        }
    }

    /// Hands a job that finished on this instance to its waiters here, so that they need not
    /// read it back from the store. Kept only while someone waits for it.
    func deliver(_ jobs: some Sequence<Job>) {
        state.withLock { state in
            for job in jobs where job.state.isTerminal && state.finish[job.id] != nil {
                state.finished[job.id] = job
            }
        }
    }

    /// The delivered finished job, if any.
    func finishedJob(_ id: JobID) -> Job? {
        state.withLock { $0.finished[id] }
    }

    func waitForWork(models: [String], _ signal: Signal) {
        state.withLock { state in
            for model in models { state.available[model, default: [:]][ObjectIdentifier(signal)] = signal }
        }
    }

    func stopWaitingForWork(models: [String], _ signal: Signal) {
        state.withLock { state in
            for model in models {
                state.available[model]?[ObjectIdentifier(signal)] = nil
                if state.available[model]?.isEmpty == true { state.available[model] = nil }
            }
        }
    }

    func watchCapacity(of model: String, _ signal: Signal) {
        state.withLock { $0.capacity[model, default: [:]][ObjectIdentifier(signal)] = signal }
    }

    func stopWatchingCapacity(of model: String, _ signal: Signal) {
        state.withLock { state in
            state.capacity[model]?[ObjectIdentifier(signal)] = nil
            if state.capacity[model]?.isEmpty == true { state.capacity[model] = nil }
        }
    }

    /// The models that submitters here wait for.
    var watchedModels: Set<String> { state.withLock { Set($0.capacity.keys) } }

    /// Sets the models that no node can serve now and wakes the submitters waiting for them.
    func setOrphaned(_ models: Set<String>) {
        let signals = state.withLock { state in
            state.orphaned = models
            return models.flatMap { state.capacity[$0].map { Array($0.values) } ?? [] }
        }
        for signal in signals { signal.signal() }
    }

    /// Whether no node can serve `model` now (as the last sweep found).
    func isOrphaned(_ model: String) -> Bool { state.withLock { $0.orphaned.contains(model) } }

    /// Whether anyone in this process waits for the job's end.
    func isWaitedFor(_ id: JobID) -> Bool {
        state.withLock { !($0.finish[id]?.isEmpty ?? true) }
    }

    var waitingSubmitters: Int { state.withLock { $0.finish.values.reduce(0) { $0 + $1.count } } }
    var waitingLeasers: Int { state.withLock { Set($0.available.values.flatMap(\.keys)).count } }
}
