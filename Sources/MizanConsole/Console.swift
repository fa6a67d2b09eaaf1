import MizanGateway

extension GatewayAddition {
    /// The operator's web console under `/console`: server-rendered pages for the overview,
    /// nodes, keys, jobs, batches and usage, signed in with the admin token. It is served only when the
    /// gateway has an admin token.
    ///
    /// ```swift
    /// let gateway = Gateway(store: store, adminToken: token, additions: [.console()])
    /// ```
    /// - Parameter sessionLifetime: How long a sign-in lasts (8 hours).
    /// - Returns: The addition.
    public static func console(sessionLifetime: Duration = .seconds(8 * 3600)) -> GatewayAddition {
        GatewayAddition { parts in ConsoleController(parts, sessionLifetime: sessionLifetime) }
    }
}
