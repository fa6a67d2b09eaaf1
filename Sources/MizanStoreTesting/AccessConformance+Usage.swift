import Foundation
import MizanCore
import MizanStore

extension AccessConformance {
    /// The checks of usage queries: filters by time, key and model, grouping by key, model,
    /// endpoint and UTC day or hour.
    static let usageChecks: [Check] = [
        Check("usage is summed by the query's grouping within its filters") { store in
            // Fixture.t0 is 08:00 UTC; 16 h on is the next UTC day.
            let records: [(String?, String, Endpoint, Double, Int, Int)] = [
                ("k1", "m1", .chatCompletions, 0, 1, 2),
                ("k1", "m1", .embeddings, 10, 3, 0),
                ("k1", "m2", .chatCompletions, 3_600, 5, 5),
                ("k2", "m1", .chatCompletions, 3_700, 7, 1),
                (nil, "m1", .chatCompletions, 57_600, 2, 2),
                ("k2", "m2", .responses, 57_700, 4, 4),
            ]
            for (key, model, endpoint, at, prompt, completion) in records {
                try await store.recordUsage(
                    UsageRecord(
                        requestID: UUID().uuidString, apiKeyID: key, model: model, servedBy: "route-a", status: 200,
                        latencyMilliseconds: 1, usage: TokenUsage(promptTokens: prompt, completionTokens: completion),
                        createdAt: Fixture.at(at),
                        endpoint: endpoint))
            }
            let byDay = try await store.usage(UsageQuery(groupBy: [.day]))
            let day0 = Date(timeIntervalSinceReferenceDate: (Fixture.at(0).timeIntervalSinceReferenceDate / 86_400).rounded(.down) * 86_400)
            try require(
                byDay == [
                    UsageRow(period: day0, requests: 4, promptTokens: 16, completionTokens: 8),
                    UsageRow(period: day0.addingTimeInterval(86_400), requests: 2, promptTokens: 6, completionTokens: 6),
                ], "per UTC day: \(byDay)")
            let k1 = try await store.usage(
                UsageQuery(since: Fixture.at(5), until: Fixture.at(57_600), apiKeyID: "k1", groupBy: [.model, .endpoint]))
            try require(
                k1 == [
                    UsageRow(model: "m1", endpoint: .embeddings, requests: 1, promptTokens: 3, completionTokens: 0),
                    UsageRow(model: "m2", endpoint: .chatCompletions, requests: 1, promptTokens: 5, completionTokens: 5),
                ], "one key's records from since (inclusive) to until (exclusive), by model and endpoint: \(k1)")
            let hours = try await store.usage(UsageQuery(model: "m1", groupBy: [.key, .hour]))
            try require(
                hours == [
                    UsageRow(apiKeyID: "k1", period: day0.addingTimeInterval(8 * 3_600), requests: 2, promptTokens: 4, completionTokens: 2),
                    UsageRow(apiKeyID: "k2", period: day0.addingTimeInterval(9 * 3_600), requests: 1, promptTokens: 7, completionTokens: 1),
                    UsageRow(period: day0.addingTimeInterval(86_400), requests: 1, promptTokens: 2, completionTokens: 2),
                ], "one model's records by key and UTC hour: \(hours)")
            let total = try await store.usage(UsageQuery(groupBy: []))
            try require(
                total == [UsageRow(requests: 6, promptTokens: 22, completionTokens: 14)], "no grouping: one row of everything: \(total)")
            let none = try await store.usage(UsageQuery(apiKeyID: "nobody", groupBy: []))
            try require(none.isEmpty, "nothing matches, no row: \(none)")
        },
        Check("usage is summed by the class each request was served in") { store in
            let records: [(PriorityClass?, Int)] = [(.interactive, 1), (.batch, 2), (.batch, 3), (nil, 4), (.standard, 5)]
            for (priority, prompt) in records {
                try await store.recordUsage(
                    UsageRecord(
                        requestID: UUID().uuidString, apiKeyID: "k1", model: "m1", servedBy: "node-a", status: 200, latencyMilliseconds: 1,
                        usage: TokenUsage(promptTokens: prompt, completionTokens: 0), createdAt: Fixture.at(0), priority: priority))
            }
            let byClass = try await store.usage(UsageQuery(groupBy: [.priority]))
            try require(
                byClass == [
                    UsageRow(requests: 1, promptTokens: 4, completionTokens: 0),
                    UsageRow(priority: .batch, requests: 2, promptTokens: 5, completionTokens: 0),
                    UsageRow(priority: .standard, requests: 1, promptTokens: 5, completionTokens: 0),
                    UsageRow(priority: .interactive, requests: 1, promptTokens: 1, completionTokens: 0),
                ], "per class, the records without one apart: \(byClass)")
            let both = try await store.usage(UsageQuery(groupBy: [.key, .priority]))
            try require(both.map(\.apiKeyID) == Array(repeating: "k1", count: 4) && both.map(\.requests) == [1, 2, 1, 1], "\(both)")
        },
    ]
}
