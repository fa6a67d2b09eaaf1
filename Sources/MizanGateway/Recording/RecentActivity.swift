import Foundation
import Synchronization

/// This gateway instance's inference traffic over the last hour, a minute at a time, for the
/// console's overview: requests, failures (5xx) and refusals (4xx), tokens, and a latency
/// histogram per minute from which the percentiles are read.
///
/// It is fed by the request recorder (one call per answered inference request) and costs a
/// lock and a few additions per request; memory is fixed (60 minutes × a small histogram).
public final class RecentActivity: Sendable {
    /// One minute's figures.
    public struct Minute: Sendable, Equatable {
        /// The minute's start.
        public var start: Date
        /// Inference requests answered.
        public var requests = 0
        /// Answers with a 5xx status.
        public var failures = 0
        /// Answers with a 4xx status.
        public var refusals = 0
        /// Tokens used (prompt and completion).
        public var tokens = 0
        /// Latencies by ``RecentActivity/bucket(ofMilliseconds:)``.
        public var latencies = [Int](repeating: 0, count: RecentActivity.buckets)
    }

    /// The latency histogram's buckets: bucket `i` holds latencies up to 0.1 ms × 1.4^i (the last
    /// one everything above), so a percentile is read to within 40 %.
    public static let buckets = 46
    private static let base = 0.1
    private static let factor = 1.4

    private struct State {
        var minutes: [Minute?] = Array(repeating: nil, count: 60)
    }

    private let state = Mutex(State())

    /// An empty record.
    public init() {}

    /// Counts one answered request.
    /// - Parameters:
    ///   - status: The HTTP status answered.
    ///   - milliseconds: The gateway's whole time for it.
    ///   - tokens: Its prompt and completion tokens.
    ///   - now: When it ended.
    func record(status: Int, milliseconds: Double, tokens: Int, now: Date = Date()) {
        let minute = Int((now.timeIntervalSince1970 / 60).rounded(.down))
        let slot = minute % 60
        let bucket = Self.bucket(ofMilliseconds: milliseconds)
        state.withLock { state in
            let start = Date(timeIntervalSince1970: Double(minute) * 60)
            if state.minutes[slot]?.start != start { state.minutes[slot] = Minute(start: start) }
            state.minutes[slot]!.requests += 1
            if status >= 500 { state.minutes[slot]!.failures += 1 } else if status >= 400 { state.minutes[slot]!.refusals += 1 }
            state.minutes[slot]!.tokens += max(0, tokens)
            state.minutes[slot]!.latencies[bucket] += 1
        }
    }

    /// The last 60 minutes, oldest first, ending with the current one (a minute without
    /// requests is present with zeros).
    public func lastHour(now: Date = Date()) -> [Minute] {
        let current = Int((now.timeIntervalSince1970 / 60).rounded(.down))
        let minutes = state.withLock { $0.minutes }
        return ((current - 59)...current).map { minute in
            let start = Date(timeIntervalSince1970: Double(minute) * 60)
            if let kept = minutes[minute % 60], kept.start == start { return kept }
            return Minute(start: start)
        }
    }

    /// The histogram bucket of a latency.
    public static func bucket(ofMilliseconds milliseconds: Double) -> Int {
        guard milliseconds > base else { return 0 }
        let index = Int((log(milliseconds / base) / log(factor)).rounded(.up))
        return min(max(0, index), buckets - 1)
    }

    /// The upper bound of a bucket, in milliseconds.
    public static func upperBound(ofBucket bucket: Int) -> Double {
        base * pow(factor, Double(bucket))
    }

    /// The latency under which `fraction` of the histogram's requests fall (a bucket's upper
    /// bound), or `nil` when it is empty.
    public static func percentile(_ fraction: Double, of latencies: [Int]) -> Double? {
        let total = latencies.reduce(0, +)
        guard total > 0 else { return nil }
        let rank = max(1, Int((fraction * Double(total)).rounded(.up)))
        var seen = 0
        for (bucket, count) in latencies.enumerated() {
            seen += count
            if seen >= rank { return upperBound(ofBucket: bucket) }
        }
        return upperBound(ofBucket: latencies.count - 1)
    }

    /// Histograms added together.
    public static func merged(_ minutes: [Minute]) -> [Int] {
        var sum = [Int](repeating: 0, count: buckets)
        for minute in minutes {
            for (index, count) in minute.latencies.enumerated() { sum[index] += count }
        }
        return sum
    }
}
