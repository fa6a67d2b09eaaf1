import Foundation
import Logging
import MizanCore
import MizanStore
import Synchronization

/// The dispatch engine: submitters hand in jobs and wait for their result; agent nodes
/// lease jobs by long-poll and report results. Embed it in any Swift server.
///
/// ```swift
/// let dispatcher = Dispatcher(store: .memory())
/// let job = try await dispatcher.submit(DispatchRequest(model: "llama3", body: body))
/// ```
///
/// Waiting is driven by store events, never by polling. Run a ``Sweeper`` beside it for
/// deadlines, lost nodes and retention.
public final class Dispatcher: Sendable {
    /// Tunables of the engine.
    public struct Configuration: Sendable {
        /// The deadline of a job when the request names none (queue time counts against it).
        public var defaultDeadline: Duration
        /// How many attempts a job may take when nodes are lost or fail retryably.
        public var maxAttempts: Int
        /// How long a lease call waits for work when the caller names no wait.
        public var defaultLeaseWait: Duration
        /// The longest a lease call may wait.
        public var maxLeaseWait: Duration
        /// The most jobs one lease call may take.
        public var maxLeaseBatch: Int
        /// How long an authenticated node and the node list are trusted without asking the
        /// store again; a node revoked through another instance is refused within it. `.zero`
        /// asks every time.
        public var cacheLifetime: Duration
        /// How long a lease may go unreported in the node's heartbeats before it counts as lost
        /// on its way to the node and the job is taken back (see ``Dispatcher/heartbeat(nodeID:report:running:)``).
        public var unreportedLeaseGrace: Duration
        /// How long a job with an idempotency key keeps running after its submitter went away,
        /// for a retry with the same key to attach to it (60 seconds); past it, with nobody
        /// waiting, it is cancelled. `.zero` cancels at once, as for other jobs.
        public var idempotentRetryGrace: Duration
        /// A node not heard from for this long is not capacity: requests do not count on it
        /// (``Dispatcher/isHealthy(_:now:)``) and the ``Sweeper`` requeues its jobs.
        public var nodeStaleAfter: Duration
        /// How the ``Sweeper`` paces its housekeeping.
        public var sweeping: Sweeping
        /// How many bytes of a streamed job's events wait for a slow client before the node's
        /// stream waits too (1 MiB): the back-pressure that bounds what a client that reads
        /// slowly costs.
        public var streamBufferBytes: Int
        /// How jobs are ordered and offered to nodes.
        public var scheduling: Scheduling

        /// How jobs are ordered and offered to nodes (see ``JobStore/lease(nodeID:limit:now:)``).
        public struct Scheduling: Sendable {
            /// A queued job waiting this long in its class rises one class (60 seconds), so
            /// that nothing starves; the ``Sweeper`` raises it.
            public var promoteAfter: Duration
            /// How long a job is offered only to the node its conversation went to, or to a node
            /// that holds its model loaded, before any node may take it (50 ms). `.zero` turns
            /// affinity off.
            public var affinityWait: Duration
            /// How long the node that answered a conversation is remembered (5 minutes).
            public var affinityMemory: Duration
            /// Slots of each node kept for live traffic (1): while requests above the `batch`
            /// class have come within ``liveWindow``, a node's last free slot takes only such a
            /// request, so that one finds a slot free instead of waiting for a batch's line to
            /// end. A node with no more slots than this keeps none. 0 turns it off.
            public var liveHeadroom: Int
            /// How long after the last request above the `batch` class (accepted on this
            /// instance) the headroom is kept (30 seconds).
            public var liveWindow: Duration

            /// Creates the scheduling tunables; every field has the default its documentation names.
            public init(
                promoteAfter: Duration = .seconds(60), affinityWait: Duration = .milliseconds(50), affinityMemory: Duration = .seconds(300),
                liveHeadroom: Int = 1, liveWindow: Duration = .seconds(30)
            ) {
                self.promoteAfter = promoteAfter
                self.affinityWait = affinityWait
                self.affinityMemory = affinityMemory
                self.liveHeadroom = max(0, liveHeadroom)
                self.liveWindow = liveWindow
            }
        }

        /// The pace of the ``Sweeper``'s housekeeping.
        public struct Sweeping: Sendable {
            /// Time between sweeps (1 second).
            public var interval: Duration
            /// How long finished jobs are kept (24 hours).
            public var retention: Duration
            /// Time between prunes of old finished jobs (1 minute).
            public var pruneInterval: Duration

            /// Creates the pace; every field has the default its documentation names.
            public init(interval: Duration = .seconds(1), retention: Duration = .seconds(86_400), pruneInterval: Duration = .seconds(60)) {
                self.interval = interval
                self.retention = retention
                self.pruneInterval = pruneInterval
            }
        }

        /// Creates a configuration.
        /// - Parameters:
        ///   - defaultDeadline: Default job deadline (5 minutes).
        ///   - maxAttempts: Attempts per job (3).
        ///   - defaultLeaseWait: Default long-poll wait (25 seconds).
        ///   - maxLeaseWait: Longest long-poll wait (60 seconds).
        ///   - maxLeaseBatch: Most jobs per lease call (64).
        ///   - cacheLifetime: How long an authenticated node and the node list are remembered (1 second).
        ///   - unreportedLeaseGrace: How long a lease may go unreported before it is taken back (30 seconds).
        ///   - idempotentRetryGrace: How long an idempotent job outlives its gone submitter (60 seconds).
        ///   - nodeStaleAfter: When a silent node stops counting as capacity and its jobs are requeued (30 seconds).
        ///   - sweeping: The sweeper's pace.
        ///   - streamBufferBytes: Bytes of events buffered for a slow client before the node waits (1 MiB).
        ///   - scheduling: Promotion and affinity.
        public init(
            defaultDeadline: Duration = .seconds(300),
            maxAttempts: Int = 3,
            defaultLeaseWait: Duration = .seconds(25),
            maxLeaseWait: Duration = .seconds(60),
            maxLeaseBatch: Int = 64,
            cacheLifetime: Duration = .seconds(1),
            unreportedLeaseGrace: Duration = .seconds(30),
            idempotentRetryGrace: Duration = .seconds(60),
            nodeStaleAfter: Duration = .seconds(30),
            sweeping: Sweeping = .init(),
            streamBufferBytes: Int = 1 << 20,
            scheduling: Scheduling = .init()
        ) {
            self.streamBufferBytes = streamBufferBytes
            self.scheduling = scheduling
            self.unreportedLeaseGrace = unreportedLeaseGrace
            self.cacheLifetime = cacheLifetime
            self.defaultDeadline = defaultDeadline
            self.maxAttempts = maxAttempts
            self.defaultLeaseWait = defaultLeaseWait
            self.maxLeaseWait = maxLeaseWait
            self.maxLeaseBatch = maxLeaseBatch
            self.nodeStaleAfter = nodeStaleAfter
            self.idempotentRetryGrace = idempotentRetryGrace
            self.sweeping = sweeping
        }
    }

    /// The store behind the engine (reach it through the engine's methods).
    let store: any DispatchStore
    /// The engine's configuration.
    public let configuration: Configuration
    let logger: Logger
    let now: @Sendable () -> Date
    let waiters = Waiters()
    /// Each node's name as last seen (``nodeName(_:)``).
    let nodeNames = Mutex<[NodeID: String]>([:])
    /// When this instance last accepted a job above the `batch` class (the uptime clock, in
    /// nanoseconds; 0: never): the lease's headroom follows it.
    let liveSeen = Atomic<Int64>(0)
    let metrics = DispatchMetrics()
    /// Active nodes by token hash (see ``authenticateNode(token:)``).
    let activeNodes: ExpiringCache<Data, Node>
    /// The last node list read (see ``recentNodes()``).
    let nodeList: ExpiringCache<Int, [Node]>
    /// Streamed events on their way to the client request waiting in this process.
    let streams: StreamHub
    /// Which node answered which conversation lately.
    let affinity: AffinityMemory
    /// Called with each node revoked through this engine.
    let revocationHandlers = Mutex<[@Sendable (NodeID) -> Void]>([])

    /// Creates an engine over a store.
    /// - Parameters:
    ///   - store: Where jobs and nodes live, e.g. `.memory()`.
    ///   - configuration: Tunables.
    ///   - logger: Where the engine logs (at `info` and below).
    ///   - now: The wall clock; inject one in tests.
    public init(
        store: some DispatchStore,
        configuration: Configuration = .init(),
        logger: Logger = Logger(label: "mizan.dispatch"),
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.store = store
        self.configuration = configuration
        self.logger = logger
        self.now = now
        self.activeNodes = ExpiringCache(lifetime: configuration.cacheLifetime)
        self.nodeList = ExpiringCache(lifetime: configuration.cacheLifetime, capacity: 1)
        self.streams = StreamHub(bufferBytes: configuration.streamBufferBytes)
        self.affinity = AffinityMemory(lifetime: configuration.scheduling.affinityMemory)
        store.addEventHandler { [waiters, streams] event in
            waiters.handle(event)
            // Streams whose node talks to another instance on a shared store arrive as events.
            if case .streamed(let id, let data, let end) = event {
                for item in data { streams.offer(id, .data(item)) }
                if end { streams.offer(id, .end) }
            }
        }
    }

    /// Calls `handler` for every job that reaches a terminal state from now on, on this
    /// instance or (on a shared store) another: with its id and state. It runs on the thread
    /// that made the change and must return quickly.
    /// - Parameter handler: The handler.
    public func onJobFinished(_ handler: @escaping @Sendable (JobID, JobState) -> Void) {
        store.addEventHandler { event in
            if case .jobFinished(let id, let state) = event { handler(id, state) }
        }
    }

    /// Calls `handler` with every node revoked through this engine, after its revocation is stored.
    /// - Parameter handler: The handler (it must return quickly).
    public func onNodeRevoked(_ handler: @escaping @Sendable (NodeID) -> Void) {
        revocationHandlers.withLock { $0.append(handler) }
    }

    /// How many submitters are waiting for a result right now.
    public var waitingSubmitters: Int { waiters.waitingSubmitters }
    /// How many lease calls are waiting for work right now.
    public var waitingLeasers: Int { waiters.waitingLeasers }
}

/// A request to run on an agent node.
public struct DispatchRequest: Sendable {
    /// The public model; nodes advertising it may lease the job.
    public var model: String
    /// The endpoint called; only nodes that serve it lease the job.
    public var endpoint: Endpoint
    /// The client's body, verbatim.
    public var body: Data
    /// Whether the client wants a stream.
    public var stream: Bool
    /// The gateway request id.
    public var requestID: String
    /// How long the job may take in all; `nil` uses the engine's default.
    public var deadline: Duration?
    /// The job's class: nodes lease the highest first (``PriorityClass/rank``).
    public var priority: Int
    /// The submitting key's share among the keys of its class (1 to 100).
    public var weight: Int
    /// The most jobs of the submitting key that may wait for a node at once; past it the
    /// request is refused with `rateLimited` (429). `nil`: no cap.
    public var maxQueued: Int?
    /// Spill: when no node leases the job within this, it is withdrawn (never also run on a
    /// node) and ``Dispatcher/submit(_:)`` throws ``JobSpilled``, for the caller to serve the
    /// request elsewhere. `nil`: no spill.
    public var spillAfter: Duration?
    /// The conversation the request continues, for affinity (``ConversationKeys``).
    public var conversation: ConversationKeys?
    /// Submitting the same key again (with the same model and body) attaches to the first job
    /// and returns its outcome; the same key with another body is refused. A job with a key
    /// outlives a submitter that went away by ``Dispatcher/Configuration/idempotentRetryGrace``.
    public var idempotencyKey: String?
    /// The submitting API key.
    public var apiKeyID: String?
    /// How long the job may wait in the queue before a node leases it; past it, a job that was
    /// never leased is withdrawn and ``Dispatcher/submit(_:)`` throws `noCapacity` (429).
    /// `nil`: only the deadline bounds the wait.
    public var queueTimeout: Duration?
    /// The job's id (a new time-ordered id by default); set it to prepare for the job (e.g.
    /// subscribe to its stream) before it can be leased.
    public var jobID: JobID
    /// Whether the job waits for its model's nodes to come back when every one of them is gone
    /// (a batch's line, whose window is hours) instead of being withdrawn with `noHealthyNode`.
    public var waitsForNodes = false
    /// Until when the job stays in its class (is not promoted, however long it waits): a
    /// batch's lines rise only once the batch's spill point has passed. `nil`: from now.
    public var inClassUntil: Date?

    /// Creates a request.
    /// - Parameters:
    ///   - model: The public model.
    ///   - endpoint: The endpoint called (chat completions by default).
    ///   - body: The client's body.
    ///   - stream: Whether the client wants a stream.
    ///   - requestID: The gateway request id (a new one by default).
    ///   - deadline: The job's time budget.
    ///   - priority: The class's rank: higher runs first.
    ///   - idempotencyKey: An idempotency key.
    ///   - apiKeyID: The submitting API key.
    ///   - queueTimeout: How long it may wait for its first lease (`nil`: until the deadline).
    ///   - jobID: The job's id (new by default).
    ///   - weight: The key's share in its class (1).
    ///   - maxQueued: The most of the key's jobs queued at once (`nil`: no cap).
    ///   - spillAfter: When an unleased job is withdrawn for the caller to serve elsewhere.
    ///   - conversation: The conversation it continues.
    public init(
        model: String,
        endpoint: Endpoint = .chatCompletions,
        body: Data,
        stream: Bool = false,
        requestID: String = TimeOrderedID.text(TimeOrderedID.make()),
        deadline: Duration? = nil,
        priority: Int = 0,
        idempotencyKey: String? = nil,
        apiKeyID: String? = nil,
        queueTimeout: Duration? = nil,
        jobID: JobID = JobID(),
        weight: Int = 1,
        maxQueued: Int? = nil,
        spillAfter: Duration? = nil,
        conversation: ConversationKeys? = nil
    ) {
        self.weight = weight
        self.maxQueued = maxQueued
        self.spillAfter = spillAfter
        self.conversation = conversation
        self.model = model
        self.endpoint = endpoint
        self.body = body
        self.stream = stream
        self.requestID = requestID
        self.deadline = deadline
        self.priority = priority
        self.idempotencyKey = idempotencyKey
        self.apiKeyID = apiKeyID
        self.queueTimeout = queueTimeout
        self.jobID = jobID
    }
}

/// A job withdrawn because no node leased it within its ``DispatchRequest/spillAfter``: it
/// never runs on a node; the caller serves the request elsewhere.
public struct JobSpilled: Error, Sendable {
    /// The withdrawn job.
    public var job: Job
}
