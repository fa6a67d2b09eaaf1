import Foundation

/// How batches (`/v1/batches`) and background responses run.
public struct BatchSettings: Sendable {
    /// The part of a batch's window after which its lines no node took may go to the model's
    /// provider routes (0.8: once 80 % of the window has gone), where its placement allows the
    /// cloud.
    public var spillAt: Double
    /// A factor on every batch's window (1: the 24 hours a client asks for). Below 1 for tests
    /// and trials: 0.001 makes a day 86.4 seconds.
    public var windowScale: Double
    /// The most lines of one batch in flight at once (queued for nodes or at a route).
    public var linesInFlight: Int
    /// The most background responses one instance runs at once.
    public var responsesInFlight: Int
    /// How long an instance's claim on a batch or background response holds without renewal:
    /// after a crash, another instance (or the gateway started again) resumes its work after it.
    public var claimLifetime: Duration
    /// How often the runner looks for work to claim and renews its claims.
    public var tick: Duration
    /// The largest file `/v1/files` takes (200 MB).
    public var maxFileBytes: Int
    /// How long a background response is kept after it ended (a day).
    public var responseRetention: Duration

    /// Creates settings; every field has the default its documentation names.
    public init(
        spillAt: Double = 0.8, windowScale: Double = 1, linesInFlight: Int = 64, responsesInFlight: Int = 256,
        claimLifetime: Duration = .seconds(15), tick: Duration = .seconds(1), maxFileBytes: Int = 200 << 20,
        responseRetention: Duration = .seconds(86_400)
    ) {
        self.spillAt = min(1, max(0, spillAt))
        self.windowScale = max(0.000_01, windowScale)
        self.linesInFlight = max(1, linesInFlight)
        self.responsesInFlight = max(1, responsesInFlight)
        self.claimLifetime = max(.seconds(1), claimLifetime)
        self.tick = max(.milliseconds(50), tick)
        self.maxFileBytes = max(1, maxFileBytes)
        self.responseRetention = responseRetention
    }
}
