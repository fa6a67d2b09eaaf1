import Hummingbird

/// Lets only the admin token through.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let credentials: Credentials

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try credentials.authenticateAdmin(Credentials.bearer(request.headers[.authorization]))
        return try await next(request, context)
    }
}
