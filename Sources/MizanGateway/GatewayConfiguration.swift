import MizanDispatch

extension Gateway {
    /// Every setting of a gateway, each in one place: the HTTP limits here, the engine's
    /// (deadlines, caches, node staleness, the sweeper's pace) in ``dispatch``, which the
    /// gateway hands to the `Dispatcher` and `Sweeper` it builds.
    public struct Configuration: Sendable {
        /// The largest request body accepted (8 MiB); larger bodies get 413.
        public var maxBodyBytes: Int
        /// The longest deadline a request may ask for with the deadline header (1 hour). A
        /// request that names none gets `Dispatcher.Configuration.defaultDeadline`.
        public var maxDeadline: Duration
        /// How long a request for an agent-served model may wait in the queue for a free node
        /// before it is answered 429 (2 minutes); the deadline still bounds the whole request.
        public var maxQueueWait: Duration
        /// The longest a provider route may take to send its response head (60 seconds).
        public var firstByteTimeout: Duration
        /// A connection that sends nothing for this long while idle between requests, or while
        /// its request's head or body is being read, is closed (60 seconds). This bounds slow
        /// and half-sent headers too: a head counts as read only once it is complete.
        public var idleTimeout: Duration
        /// The longest a request's whole body may take to arrive, however steadily it trickles
        /// in (60 seconds); past it the request gets 408.
        public var bodyTimeout: Duration
        /// The most client connections open at once (4,096); past it a new connection is closed
        /// as soon as it is accepted.
        public var maxConnections: Int
        /// How long a node whose agent channels all ended (without a goodbye) may take to come
        /// back before it counts as disconnected and its leased jobs go back to the queue (5
        /// seconds). Nodes on the HTTP agent API go stale after `Dispatcher.Configuration.nodeStaleAfter` instead.
        public var nodeDisconnectGrace: Duration
        /// The output tokens a counted key's request reserves when it names no output limit
        /// (`max_tokens` and its kin): reserved at admission with the prompt's estimate, settled
        /// to the real count when it ends (256). A request that names none and uses more may
        /// overrun a token limit or budget by the difference.
        public var tokenReservation: Int
        /// How many usage writes that failed (the store did not answer) may wait to be written
        /// again before the gateway refuses counted keys' requests with 503 and `/readyz` says
        /// it is not ready (10,000).
        public var usageSpoolCapacity: Int
        /// Whether agents may open the persistent channel, `POST /agent/v1/channel` (true);
        /// without it they use the HTTP agent API (the channel answers 404 and they fall back).
        public var agentChannel: Bool
        /// Which capacity serves a client request, in which order (``RoutesFirst``: provider
        /// routes, then agent nodes).
        public var placement: any PlacementPolicy
        /// The engine's settings. Its `Dispatcher.Configuration.cacheLifetime` also bounds how
        /// long an API key read from the store is trusted (a key revoked through another
        /// instance stops working within it), and its `Dispatcher.Configuration.nodeStaleAfter`
        /// decides which nodes count as capacity for a request.
        public var dispatch: Dispatcher.Configuration
        /// How batches and background responses run (``BatchSettings``).
        public var batches = BatchSettings()

        /// Creates a configuration; every field has the default its documentation names.
        public init(
            maxBodyBytes: Int = 8 << 20,
            maxDeadline: Duration = .seconds(3600),
            maxQueueWait: Duration = .seconds(120),
            firstByteTimeout: Duration = .seconds(60),
            idleTimeout: Duration = .seconds(60),
            bodyTimeout: Duration = .seconds(60),
            maxConnections: Int = 4096,
            agentChannel: Bool = true,
            nodeDisconnectGrace: Duration = .seconds(5),
            usageSpoolCapacity: Int = 10_000,
            tokenReservation: Int = 256,
            placement: any PlacementPolicy = .routesFirst,
            dispatch: Dispatcher.Configuration = .init()
        ) {
            self.maxBodyBytes = maxBodyBytes
            self.maxDeadline = maxDeadline
            self.maxQueueWait = maxQueueWait
            self.firstByteTimeout = firstByteTimeout
            self.idleTimeout = idleTimeout
            self.bodyTimeout = bodyTimeout
            self.maxConnections = maxConnections
            self.agentChannel = agentChannel
            self.nodeDisconnectGrace = nodeDisconnectGrace
            self.usageSpoolCapacity = usageSpoolCapacity
            self.tokenReservation = max(0, tokenReservation)
            self.placement = placement
            self.dispatch = dispatch
        }
    }
}
