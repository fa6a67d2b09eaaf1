import Foundation
import MizanCore
import Synchronization

/// The provider routes per model, tried in priority order, with a cool-down for routes that
/// keep failing: after `failuresBeforeCooldown` failures in a row a route is skipped for
/// `cooldown`, unless no other route of the model is left.
public final class RouteTable: Sendable {
    /// The routes of every model, by priority (then file order).
    public let routesByModel: [String: [ProviderRoute]]
    /// How long a failing route is skipped.
    public let cooldown: Duration
    /// Failures in a row that start a cool-down.
    public let failuresBeforeCooldown: Int
    private let health = Mutex<[String: RouteHealth]>([:])

    struct RouteHealth {
        var failures = 0
        var coolingUntil: ContinuousClock.Instant?
    }

    /// Creates a table.
    /// - Parameters:
    ///   - routes: The routes.
    ///   - cooldown: How long a failing route is skipped (30 seconds).
    ///   - failuresBeforeCooldown: Failures in a row before it is skipped (3).
    public init(routes: [ProviderRoute], cooldown: Duration = .seconds(30), failuresBeforeCooldown: Int = 3) {
        var byModel: [String: [(Int, ProviderRoute)]] = [:]
        for (index, route) in routes.enumerated() { byModel[route.model, default: []].append((index, route)) }
        routesByModel = byModel.mapValues { entries in
            entries.sorted { ($0.1.priority, $0.0) < ($1.1.priority, $1.0) }.map(\.1)
        }
        self.cooldown = cooldown
        self.failuresBeforeCooldown = max(1, failuresBeforeCooldown)
    }

    /// The models with at least one route, sorted.
    public var models: [String] { routesByModel.keys.sorted() }

    /// The routes to try for `model`, in order: those not cooling down by priority, then
    /// (as a last resort) those cooling down.
    /// - Parameters:
    ///   - model: The public model.
    ///   - endpoint: The endpoint called (only routes that serve it), or `nil` for every route of the model.
    ///   - now: The current instant.
    /// - Returns: The routes; empty when none serves the model.
    public func candidates(for model: String, endpoint: Endpoint? = .chatCompletions, now: ContinuousClock.Instant = .now)
        -> [ProviderRoute]
    {
        guard var routes = routesByModel[model] else { return [] }
        if let endpoint { routes = routes.filter { $0.serves(endpoint) } }
        guard !routes.isEmpty else { return [] }
        let cooling: Set<String> = health.withLock { health in
            Set(routes.map(\.name).filter { name in (health[name]?.coolingUntil).map { $0 > now } ?? false })
        }
        let ordered = cooling.isEmpty ? routes : routes.filter { !cooling.contains($0.name) } + routes.filter { cooling.contains($0.name) }
        return Self.sharedByWeight(ordered)
    }

    /// Routes of equal priority (next to each other, as sorted) in a random order weighted by
    /// their weights: the first of a group is each route in proportion to its weight.
    static func sharedByWeight(_ routes: [ProviderRoute]) -> [ProviderRoute] {
        guard routes.count > 1 else { return routes }
        var result = routes
        var start = 0
        while start < result.count {
            var end = start + 1
            while end < result.count, result[end].priority == result[start].priority { end += 1 }
            if end - start > 1 {
                // Weighted sampling without replacement: order by u^(1/w), largest first.
                let keyed = result[start..<end].map {
                    (key: pow(Double.random(in: .ulpOfOne..<1), 1 / Double(max(1, $0.weight))), route: $0)
                }
                result.replaceSubrange(start..<end, with: keyed.sorted { $0.key > $1.key }.map(\.route))
            }
            start = end
        }
        return result
    }

    /// Whether a route is cooling down now.
    public func isCoolingDown(_ route: ProviderRoute, now: ContinuousClock.Instant = .now) -> Bool {
        health.withLock { ($0[route.name]?.coolingUntil).map { $0 > now } ?? false }
    }

    /// Records a failure of a route.
    /// - Returns: Whether this failure started a cool-down.
    @discardableResult
    public func recordFailure(_ route: ProviderRoute, now: ContinuousClock.Instant = .now) -> Bool {
        health.withLock { health in
            var entry = health[route.name] ?? RouteHealth()
            entry.failures += 1
            var started = false
            if entry.failures >= failuresBeforeCooldown {
                entry.coolingUntil = now.advanced(by: cooldown)
                entry.failures = 0
                started = true
            }
            health[route.name] = entry
            return started
        }
    }

    /// Records a success of a route: its failure count and cool-down are cleared.
    public func recordSuccess(_ route: ProviderRoute) {
        health.withLock { $0[route.name] = nil }
    }
}
