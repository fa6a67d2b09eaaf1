import Foundation

/// How an agent finds out which models its local server holds loaded (in memory, ready to
/// answer without loading first), from the answers servers give:
///
/// - A server found by its `GET /api/version` is asked `GET /api/ps`:
///   `{"models": [{"name": "alpha:8b", "model": "alpha:8b", …}]}`, the models it runs now (its
///   `/v1/models` lists every model it has on disk).
/// - Any other server is asked `GET /v1/models`: what it lists is loaded (such servers serve
///   the models they loaded at start), except entries whose `status` says otherwise (a server
///   that loads models on demand marks each: `"status": {"value": "loaded"}`, `"unloaded"`,
///   `"loading"`).
///
/// Each is asked for ``timeout`` at most; an answer that cannot be read means unknown (`nil`).
enum LoadedModels {
    /// How long a probe may take.
    static let timeout: Duration = .seconds(2)

    /// The most names read from one answer.
    static let maxNames = 256

    /// The models of a `GET /api/ps` answer.
    /// - Parameter data: The answer's body.
    /// - Returns: Their names, or `nil` when it is not such an answer.
    static func readRunning(_ data: Data) -> [String]? {
        struct Answer: Decodable {
            struct Model: Decodable {
                var name: String?
                var model: String?
            }
            var models: [Model]
        }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: data) else { return nil }
        return Array(answer.models.compactMap { $0.name ?? $0.model }.filter { !$0.isEmpty }.prefix(maxNames))
    }

    /// The loaded models of a `GET /v1/models` answer.
    /// - Parameter data: The answer's body.
    /// - Returns: The ids listed, but those whose `status` is other than `loaded`; `nil` when it
    ///   is not a model list.
    static func readModelList(_ data: Data) -> [String]? {
        struct Answer: Decodable {
            struct Model: Decodable {
                var id: String
                var status: Status?
            }
            var data: [Model]
        }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: data) else { return nil }
        return Array(answer.data.filter { $0.status?.loaded ?? true }.map(\.id).filter { !$0.isEmpty }.prefix(maxNames))
    }

    /// A model's `status` in a list: a word, or an object holding it as `value`.
    private struct Status: Decodable {
        var value: String?

        var loaded: Bool { value.map { $0.lowercased() == "loaded" } ?? true }

        init(from decoder: any Decoder) throws {
            if let word = try? decoder.singleValueContainer().decode(String.self) {
                value = word
                return
            }
            enum Keys: String, CodingKey { case value }
            value = try? decoder.container(keyedBy: Keys.self).decodeIfPresent(String.self, forKey: .value)
        }
    }
}
