import Foundation
import MizanCore
import Yams

/// One provider route of the routes file: a public model served by an upstream
/// OpenAI-compatible endpoint.
public struct ProviderRoute: Sendable, Equatable, Codable {
    /// The model clients ask for.
    public var model: String
    /// The upstream API base, e.g. `https://api.openai.com/v1`.
    public var baseURL: String
    /// The model name sent upstream (defaults to `model`).
    public var upstreamModel: String
    /// The environment variable holding the upstream key, if any. The key itself never sits in the file.
    public var apiKeyEnv: String?
    /// Lower numbers are tried first.
    public var priority: Int
    /// Routes of equal priority share requests in proportion to their weights (1 to 1,000).
    public var weight: Int
    /// The overall time limit of a call on this route.
    public var timeoutSeconds: Double
    /// The endpoints the upstream serves for this model (all of them by default), e.g.
    /// `[chat/completions, embeddings]`; a request on another endpoint skips the route.
    public var endpoints: [Endpoint]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, baseURL, upstreamModel, apiKeyEnv, priority, weight, timeoutSeconds, endpoints
    }

    /// Whether the route serves `endpoint`.
    public func serves(_ endpoint: Endpoint) -> Bool { endpoints.contains(endpoint) }

    /// Creates a route.
    public init(
        model: String, baseURL: String, upstreamModel: String? = nil, apiKeyEnv: String? = nil, priority: Int = 100,
        timeoutSeconds: Double = 300, endpoints: [Endpoint] = Endpoint.all, weight: Int = 1
    ) {
        self.weight = weight
        self.endpoints = Endpoint.normalized(endpoints)
        self.model = model
        self.baseURL = baseURL
        self.upstreamModel = upstreamModel ?? model
        self.apiKeyEnv = apiKeyEnv
        self.priority = priority
        self.timeoutSeconds = timeoutSeconds
    }

    public init(from decoder: any Decoder) throws {
        try UnknownKeys.refuse(in: decoder, known: CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(String.self, forKey: .model)
        baseURL = try container.decode(String.self, forKey: .baseURL)
        upstreamModel = try container.decodeIfPresent(String.self, forKey: .upstreamModel) ?? model
        apiKeyEnv = try container.decodeIfPresent(String.self, forKey: .apiKeyEnv)
        priority = try container.decodeIfPresent(Int.self, forKey: .priority) ?? 100
        weight = try container.decodeIfPresent(Int.self, forKey: .weight) ?? 1
        timeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? 300
        if let names = try container.decodeIfPresent([String].self, forKey: .endpoints) {
            var endpoints: [Endpoint] = []
            for name in names {
                guard let endpoint = Endpoint(configured: name) else {
                    throw UnknownKeys.unknownValue(
                        "endpoint", name, known: Endpoint.allCases.map(\.rawValue), forKey: .endpoints, in: container)
                }
                endpoints.append(endpoint)
            }
            guard !endpoints.isEmpty else {
                throw DecodingError.dataCorruptedError(forKey: .endpoints, in: container, debugDescription: "an empty endpoint list")
            }
            self.endpoints = Endpoint.normalized(endpoints)
        } else {
            endpoints = Endpoint.all
        }
    }

    /// A name for logs, metrics and usage records: the model, the host (and port) and the
    /// priority; never a key.
    public var name: String {
        let components = URLComponents(string: baseURL)
        let host = components?.host ?? baseURL
        let address = components?.port.map { "\(host):\($0)" } ?? host
        return "\(model)@\(address)#\(priority)"
    }
}

/// Where a model's requests go first: its provider routes ("cloud") or the agent nodes that
/// serve it ("local"), as the routes file's `models:` list says.
public struct ModelPlacement: Sendable, Equatable, Codable {
    /// Which kind of capacity comes first, and whether the other is used at all.
    public enum Kind: String, Sendable, Equatable, Codable, CaseIterable {
        /// Routes in priority order, then agent nodes (the default).
        case cloudFirst = "cloud-first"
        /// Agent nodes; a request no node leases within ``ModelPlacement/spillAfterMs``, or with
        /// no healthy node for the model, goes to the routes.
        case localFirst = "local-first"
        /// Agent nodes only.
        case localOnly = "local-only"
        /// Routes only.
        case cloudOnly = "cloud-only"
    }

    /// The public model.
    public var model: String
    /// Which capacity comes first.
    public var placement: Kind
    /// `local-first`: how long a request waits for a node to lease it before it goes to the
    /// model's routes (300 ms).
    public var spillAfterMs: Int

    enum CodingKeys: String, CodingKey, CaseIterable { case model, placement, spillAfterMs }

    /// Creates a model's placement.
    public init(model: String, placement: Kind, spillAfterMs: Int = 300) {
        self.model = model
        self.placement = placement
        self.spillAfterMs = spillAfterMs
    }

    public init(from decoder: any Decoder) throws {
        try UnknownKeys.refuse(in: decoder, known: CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(String.self, forKey: .model)
        let name = try container.decodeIfPresent(String.self, forKey: .placement) ?? Kind.cloudFirst.rawValue
        guard let kind = Kind(rawValue: name) else {
            throw UnknownKeys.unknownValue("placement", name, known: Kind.allCases.map(\.rawValue), forKey: .placement, in: container)
        }
        placement = kind
        spillAfterMs = try container.decodeIfPresent(Int.self, forKey: .spillAfterMs) ?? 300
    }
}

/// The routes file: `{"models":[…],"routes":[…]}` in JSON, or the same in YAML when the file
/// ends in `.yaml`/`.yml`. `models` is optional: a model it does not name is `cloud-first`.
public struct RoutesFile: Sendable, Equatable, Codable {
    /// The models' placements, in file order.
    public var models: [ModelPlacement]
    /// The routes, in file order.
    public var routes: [ProviderRoute]

    /// Creates a routes file.
    public init(routes: [ProviderRoute], models: [ModelPlacement] = []) {
        self.routes = routes
        self.models = models
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case models, routes }

    public init(from decoder: any Decoder) throws {
        try UnknownKeys.refuse(in: decoder, known: CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        routes = try container.decodeIfPresent([ProviderRoute].self, forKey: .routes) ?? []
        models = try container.decodeIfPresent([ModelPlacement].self, forKey: .models) ?? []
    }

    /// Reads and checks a routes file.
    /// - Parameter path: The file; `.yaml`/`.yml` is read as YAML, anything else as JSON.
    /// - Returns: The routes.
    /// - Throws: `MizanError` `badRequest` naming the file and what is wrong.
    public static func load(path: String) throws -> RoutesFile {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw MizanError(.badRequest, "Cannot read the routes file \(path).")
        }
        let isYAML = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
        return try parse(data, yaml: isYAML, source: path)
    }

    /// Parses and checks routes.
    /// - Parameters:
    ///   - data: The file's bytes.
    ///   - yaml: Whether it is YAML (else JSON).
    ///   - source: A name for error messages.
    /// - Returns: The routes.
    /// - Throws: `MizanError` `badRequest`.
    public static func parse(_ data: Data, yaml: Bool, source: String = "routes") throws -> RoutesFile {
        let file: RoutesFile
        do {
            if yaml {
                file = try YAMLDecoder().decode(RoutesFile.self, from: data)
            } else {
                file = try JSONDecoder().decode(RoutesFile.self, from: data)
            }
        } catch let DecodingError.keyNotFound(key, context) {
            throw MizanError(.badRequest, "\(source): missing '\(key.stringValue)' at \(path(context)).")
        } catch let DecodingError.typeMismatch(_, context) {
            throw MizanError(.badRequest, "\(source): wrong type at \(path(context)).")
        } catch let DecodingError.valueNotFound(_, context) {
            throw MizanError(.badRequest, "\(source): missing value at \(path(context)).")
        } catch let DecodingError.dataCorrupted(context) where context.underlyingError is UnknownKeys.Found {
            let found = context.underlyingError as! UnknownKeys.Found
            let line = Self.line(of: found.key, in: data).map { ":\($0)" } ?? ""
            let suggestion =
                found.known.first { $0.lowercased() == found.key.lowercased() }.map { "; did you mean '\($0)'?" }
                ?? " (known keys: \(found.known.joined(separator: ", ")))."
            let place = context.codingPath.isEmpty ? "at the top level" : "in \(path(context))"
            throw MizanError(.badRequest, "\(source)\(line): unknown key '\(SafeText.excerpt(found.key, limit: 64))' \(place)\(suggestion)")
        } catch let DecodingError.dataCorrupted(context)
            where ["endpoints", "placement"].contains(context.codingPath.last?.stringValue ?? "")
        {
            throw MizanError(.badRequest, "\(source): \(path(context)): \(context.debugDescription).")
        } catch let error as YamlError {
            throw MizanError(.badRequest, "\(source): not valid YAML: \(SafeText.excerpt("\(error)", limit: 300))")
        } catch let DecodingError.dataCorrupted(context) {
            let detail = (context.underlyingError.map { "\($0)" } ?? context.debugDescription)
            throw MizanError(
                .badRequest,
                "\(source): not valid \(yaml ? "YAML" : "JSON") of the form {\"routes\":[…]}: \(SafeText.excerpt(detail, limit: 300))")
        } catch {
            throw MizanError(
                .badRequest,
                "\(source): not valid \(yaml ? "YAML" : "JSON") of the form {\"routes\":[…]}: "
                    + SafeText.excerpt("\(error)", limit: 300))
        }
        for (index, route) in file.routes.enumerated() {
            guard !route.model.isEmpty else { throw MizanError(.badRequest, "\(source): routes[\(index)] has an empty model.") }
            guard let url = URLComponents(string: route.baseURL), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false
            else {
                throw MizanError(.badRequest, "\(source): routes[\(index)].baseURL must be an http(s) URL.")
            }
            guard route.timeoutSeconds > 0 else {
                throw MizanError(.badRequest, "\(source): routes[\(index)].timeoutSeconds must be positive.")
            }
            guard (1...1_000).contains(route.weight) else {
                throw MizanError(.badRequest, "\(source): routes[\(index)].weight must be 1 to 1000.")
            }
        }
        var placed: Set<String> = []
        for (index, entry) in file.models.enumerated() {
            guard !entry.model.isEmpty else { throw MizanError(.badRequest, "\(source): models[\(index)] has an empty model.") }
            guard placed.insert(entry.model).inserted else {
                throw MizanError(.badRequest, "\(source): models[\(index)] names '\(SafeText.escaped(entry.model))' a second time.")
            }
            guard (0...600_000).contains(entry.spillAfterMs) else {
                throw MizanError(.badRequest, "\(source): models[\(index)].spillAfterMs must be 0 to 600000 (milliseconds).")
            }
        }
        return file
    }

    /// The 1-based line where `key` first appears as a key (`key:` in YAML, `"key"` in JSON).
    static func line(of key: String, in data: Data) -> Int? {
        let text = String(decoding: data, as: UTF8.self)
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.drop { $0 == " " || $0 == "\t" || $0 == "-" }.drop { $0 == " " }
            if trimmed.hasPrefix("\(key):") || trimmed.hasPrefix("\"\(key)\"") || line.contains("\"\(key)\"") || line.contains("{\(key):")
                || line.contains(" \(key):")
            {
                return index + 1
            }
        }
        return nil
    }

    private static func path(_ context: DecodingError.Context) -> String {
        let parts = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return parts.isEmpty ? "the top level" : String(parts.drop { $0 == "." })
    }
}

/// Refuses keys a decoder does not know, so a typo (`apikeyEnv:`) stops the start instead of
/// being ignored.
enum UnknownKeys {
    /// A key that is not one of `known`.
    struct Found: Error {
        var key: String
        var known: [String]
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The refusal of a value that is not one of `known` (a placement, an endpoint), naming them.
    static func unknownValue<Keys: CodingKey>(
        _ what: String, _ value: String, known: [String], forKey key: Keys, in container: KeyedDecodingContainer<Keys>
    ) -> DecodingError {
        DecodingError.dataCorruptedError(
            forKey: key, in: container,
            debugDescription: "unknown \(what) '\(SafeText.excerpt(value, limit: 64))' (known: \(known.joined(separator: ", ")))")
    }

    /// Throws `DecodingError.dataCorrupted` (with a ``Found``) for the first unknown key.
    static func refuse<Keys: CodingKey & CaseIterable>(in decoder: any Decoder, known: Keys.Type) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        let names = Keys.allCases.map(\.stringValue)
        for key in container.allKeys where !names.contains(key.stringValue) {
            throw DecodingError.dataCorrupted(
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "unknown key '\(key.stringValue)'",
                    underlyingError: Found(key: key.stringValue, known: names)
                ))
        }
    }
}
