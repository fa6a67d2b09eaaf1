/// One upstream OpenAI-compatible server and the limits of calls to it.
public struct ProviderEndpoint: Sendable {
    /// The API base, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:11434/v1`.
    public var baseURL: String
    /// The bearer key, if the server wants one. Never logged.
    public var apiKey: String?
    /// How long the response head (status and headers) may take.
    public var firstByteTimeout: Duration
    /// How long a whole call may take, body included.
    public var totalTimeout: Duration

    /// Creates an endpoint.
    /// - Parameters:
    ///   - baseURL: The API base URL (with or without a trailing slash).
    ///   - apiKey: The bearer key.
    ///   - firstByteTimeout: Limit for the response head (60 seconds).
    ///   - totalTimeout: Limit for the whole call (5 minutes).
    public init(
        baseURL: String,
        apiKey: String? = nil,
        firstByteTimeout: Duration = .seconds(60),
        totalTimeout: Duration = .seconds(300)
    ) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        self.firstByteTimeout = firstByteTimeout
        self.totalTimeout = totalTimeout
    }

    /// The URL of `path` under the base URL.
    public func url(_ path: String) -> String { baseURL + path }
}
