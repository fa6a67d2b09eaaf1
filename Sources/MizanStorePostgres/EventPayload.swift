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

    /// The JSON text, written directly (every job insert and completion sends one).
    func encoded() -> String {
        var out = "{\"o\":"
        Self.append(o, to: &out)
        Self.appendList(",\"a\":", a, to: &out) { item, out in
            out += "{\"m\":"
            Self.append(item.m, to: &out)
            out += ",\"n\":\(item.n)}"
        }
        Self.appendList(",\"f\":", f, to: &out) { item, out in
            out += "{\"id\":"
            Self.append(item.id, to: &out)
            out += ",\"s\":"
            Self.append(item.s, to: &out)
            out += "}"
        }
        if let r {
            out += ",\"r\":{\"id\":"
            Self.append(r.id, to: &out)
            Self.appendList(",\"d\":", r.d, to: &out) { item, out in Self.append(item, to: &out) }
            out += ",\"e\":\(r.e)}"
        }
        out += "}"
        return out
    }

    /// Appends `prefix` and `items` as a JSON array, each written by `write`; nothing when `nil`.
    static func appendList<T>(_ prefix: String, _ items: [T]?, to out: inout String, _ write: (T, inout String) -> Void) {
        guard let items else { return }
        out += prefix + "["
        for (index, item) in items.enumerated() {
            if index > 0 { out += "," }
            write(item, &out)
        }
        out += "]"
    }

    /// Appends `text` as a JSON string literal.
    static func append(_ text: String, to out: inout String) {
        out += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }

    /// Whether `text` is a notification this instance (`origin`) sent, told without parsing it.
    static func isOwn(_ text: String, origin: String) -> Bool {
        text.hasPrefix("{\"o\":\"\(origin)\"") || text.hasPrefix("{\"o\" : \"\(origin)\"")
    }

    static func decode(_ text: String) -> EventPayload? {
        try? JSONDecoder().decode(EventPayload.self, from: Data(text.utf8))
    }
}
