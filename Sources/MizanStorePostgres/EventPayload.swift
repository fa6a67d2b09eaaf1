import Foundation
import MizanCore
import MizanStore

/// The text of a store notification: the sending instance and its events.
struct EventPayload: Codable {
    /// Events per notification, well under PostgreSQL's 8000-byte payload limit.
    static let maxEvents = 80

    struct Available: Codable {
        var m: String
        var n: Int
    }

    struct Finished: Codable {
        var id: String
        var s: String
    }

    struct Streamed: Codable {
        var id: String
        var d: [String]
        var e: Bool
    }

    var o: String
    var a: [Available]?
    var f: [Finished]?
    var r: Streamed?

    var origin: String { o }

    init(origin: String, events: [StoreEvent]) {
        o = origin
        var available: [Available] = []
        var finished: [Finished] = []
        for event in events {
            switch event {
            case .jobsAvailable(let model, let count): available.append(Available(m: model, n: count))
            case .jobFinished(let id, let state): finished.append(Finished(id: id.description, s: state.rawValue))
            case .resync: break
            case .streamed(let id, let data, let end): r = Streamed(id: id.description, d: data, e: end)
            }
        }
        a = available.isEmpty ? nil : available
        f = finished.isEmpty ? nil : finished
    }

    var events: [StoreEvent] {
        let relayed: [StoreEvent] = r.flatMap { item in JobID(item.id).map { [.streamed(id: $0, data: item.d, end: item.e)] } } ?? []
        return relayed + (a ?? []).map { .jobsAvailable(model: $0.m, count: $0.n) }
            + (f ?? []).compactMap { item in
                guard let id = JobID(item.id), let state = JobState(rawValue: item.s) else { return nil }
                return .jobFinished(id: id, state: state)
            }
    }

    func encoded() -> String {
        String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self)
    }

    static func decode(_ text: String) -> EventPayload? {
        try? JSONDecoder().decode(EventPayload.self, from: Data(text.utf8))
    }
}
