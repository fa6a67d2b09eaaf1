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
    /// The overall time limit of a call on this route.
    public var timeoutSeconds: Double

    enum CodingKeys: String, CodingKey {
        case model, baseURL, upstreamModel, apiKeyEnv, priority, timeoutSeconds
    }

    /// Creates a route.
    public init(model: String, baseURL: String, upstreamModel: String? = nil, apiKeyEnv: String? = nil, priority: Int = 100, timeoutSeconds: Double = 300) {
        self.model = model
        self.baseURL = baseURL
        self.upstreamModel = upstreamModel ?? model
        self.apiKeyEnv = apiKeyEnv
        self.priority = priority
        self.timeoutSeconds = timeoutSeconds
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(String.self, forKey: .model)
        baseURL = try container.decode(String.self, forKey: .baseURL)
        upstreamModel = try container.decodeIfPresent(String.self, forKey: .upstreamModel) ?? model
        apiKeyEnv = try container.decodeIfPresent(String.self, forKey: .apiKeyEnv)
        priority = try container.decodeIfPresent(Int.self, forKey: .priority) ?? 100
        timeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? 300
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

/// The routes file: `{"routes":[…]}` in JSON, or the same in YAML when the file ends in `.yaml`/`.yml`.
public struct RoutesFile: Sendable, Equatable, Codable {
    /// The routes, in file order.
    public var routes: [ProviderRoute]

    /// Creates a routes file.
    public init(routes: [ProviderRoute]) { self.routes = routes }

    /// Reads and checks a routes file.
    /// - Parameter path: The file; `.yaml`/`.yml` is read as YAML, anything else as JSON.
    /// - Returns: The routes.
    /// - Throws: ``MizanError`` `badRequest` naming the file and what is wrong.
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
    /// - Throws: ``MizanError`` `badRequest`.
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
        } catch {
            throw MizanError(.badRequest, "\(source): not valid \(yaml ? "YAML" : "JSON") of the form {\"routes\":[…]}.")
        }
        for (index, route) in file.routes.enumerated() {
            guard !route.model.isEmpty else { throw MizanError(.badRequest, "\(source): routes[\(index)] has an empty model.") }
            guard let url = URLComponents(string: route.baseURL), ["http", "https"].contains(url.scheme ?? ""), url.host?.isEmpty == false else {
                throw MizanError(.badRequest, "\(source): routes[\(index)].baseURL must be an http(s) URL.")
            }
            guard route.timeoutSeconds > 0 else { throw MizanError(.badRequest, "\(source): routes[\(index)].timeoutSeconds must be positive.") }
        }
        return file
    }

    private static func path(_ context: DecodingError.Context) -> String {
        let parts = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return parts.isEmpty ? "the top level" : String(parts.drop { $0 == "." })
    }
}
