import Foundation

/// When the parts of one mock answer are due, counted from the moment its request took a slot.
///
/// Without a service time (``MockProvider/Configuration/serviceTime``) the mock answers as it
/// always has: the first token after the latency, then one token every token interval (a JSON
/// answer after the latency alone). With one, the answer holds its slot that long in all: the
/// first token after the latency, the last at the service time, the tokens between spread
/// evenly (a JSON answer at the service time), and the token interval is not used. A prefix
/// cache hit replaces the latency by the cached prefill time, and the answer ends that much
/// sooner.
struct MockPace: Sendable {
    /// When the request took its slot.
    let start: ContinuousClock.Instant
    /// The first token's time after the start.
    let firstToken: Duration
    /// With a service time: from the first token to the last.
    let decode: Duration?
    /// Without one: between tokens.
    let interval: Duration

    /// The pace of an answer starting now.
    /// - Parameters:
    ///   - configuration: The mock's configuration.
    ///   - cacheHit: Whether its prompt's prefix was served before (a prefix cache hit).
    ///   - start: When it took its slot.
    init(_ configuration: MockProvider.Configuration, cacheHit: Bool = false, start: ContinuousClock.Instant = .now) {
        self.start = start
        self.firstToken = cacheHit ? configuration.effectiveCachedPrefill : configuration.latency
        self.decode = configuration.serviceTime.map { max(.zero, $0 - configuration.latency) }
        self.interval = configuration.tokenInterval
    }

    /// Waits for the first token's time.
    func first() async throws {
        try await wait(until: start + firstToken)
    }

    /// Waits for the time of part `index` of `count` (the first is sent at ``first()``); without a
    /// service time, parts from `pacedFrom` on wait one token interval each.
    func part(_ index: Int, of count: Int, pacedFrom: Int = 1) async throws {
        if let decode {
            guard count > 1, index > 0 else { return }
            try await wait(until: start + firstToken + decode * min(index, count - 1) / (count - 1))
        } else if index >= pacedFrom, interval > .zero {
            try await Task.sleep(for: interval)
        }
    }

    /// Waits for the answer's end: with a service time, the last token's time (a JSON answer
    /// is sent then); without one, at once.
    func last() async throws {
        guard let decode else { return }
        try await wait(until: start + firstToken + decode)
    }

    private func wait(until due: ContinuousClock.Instant) async throws {
        if due > .now { try await Task.sleep(until: due, clock: .continuous) }
    }
}
