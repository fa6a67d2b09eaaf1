import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import MizanGateway
import MizanStore

/// The operator's web console under `/console`: server-rendered pages for the overview, nodes,
/// keys, jobs and usage, signed in with the admin token. It is served only when the gateway
/// has an admin token.
///
/// Every page is built on the server from the same operations as the admin API; the page's
/// small script only localizes times, copies secrets, asks for confirmations and refreshes
/// the live parts. Responses carry a strict `Content-Security-Policy` (no inline script or
/// style), `X-Frame-Options: DENY` and `Cache-Control: no-store`.
struct ConsoleController: GatewayRoutes {
    let dispatcher: Dispatcher
    let credentials: Credentials
    let access: any AccessStore
    let routes: RouteTable
    let activity: RecentActivity
    let sessions: ConsoleSessions
    let limiter = SignInLimiter()
    let logger: Logger

    /// The largest form body the console reads.
    static let maxFormBytes = 64 << 10
    /// Rows on a page of jobs.
    static let jobsPageSize = 50

    /// The console of a gateway, when it has an admin token to sign in with.
    /// - Parameters:
    ///   - parts: The gateway's parts.
    ///   - sessionLifetime: How long a sign-in lasts.
    init?(_ parts: GatewayParts, sessionLifetime: Duration) {
        guard let hash = parts.credentials.adminTokenHash else { return nil }
        dispatcher = parts.dispatcher
        credentials = parts.credentials
        access = parts.access
        routes = parts.routes
        activity = parts.activity
        sessions = ConsoleSessions(adminTokenHash: hash, lifetime: sessionLifetime.timeInterval, logger: parts.logger)
        logger = parts.logger
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        let console = router.group("/console")
        console.get("/assets/console.css") { _, _ in Self.asset(ConsoleAssets.css, type: "text/css; charset=utf-8") }
        console.get("/assets/console.js") { _, _ in Self.asset(ConsoleAssets.javascript, type: "text/javascript; charset=utf-8") }
        console.get("/sign-in") { request, context in
            await page(request, context, signedIn: false) { session in
                // Signed in already: the console itself.
                session.expires > Date() ? Self.redirect(to: "/console") : signInPage(request)
            }
        }
        console.post("/sign-in") { request, context in
            await page(request, context, signedIn: false) { _ in try await signIn(request, context) }
        }
        console.post("/sign-out") { request, context in
            await page(request, context) { session in
                _ = try await checkedForm(request, session)
                await sessions.end(session, in: access)
                var response = Self.redirect(to: "/console/sign-in")
                response.headers.append(HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.cookieName, "", maxAge: 0, request)))
                return response
            }
        }
        console.get("") { request, context in await page(request, context) { try await overview($0) } }
        console.get("/nodes") { request, context in
            await page(request, context) { try await nodesPage($0, notice: Self.notice(request)) }
        }
        console.post("/nodes") { request, context in await page(request, context) { try await createNode(request, $0) } }
        console.post("/nodes/{id}/revoke") { request, context in
            await page(request, context) { try await revokeNode(request, context, $0) }
        }
        console.get("/keys") { request, context in
            await page(request, context) { try await keysPage($0, notice: Self.notice(request)) }
        }
        console.post("/keys") { request, context in await page(request, context) { try await createKey(request, $0) } }
        console.get("/keys/{id}") { request, context in
            await page(request, context) { try await keyPage(context, $0, notice: Self.notice(request)) }
        }
        console.post("/keys/{id}") { request, context in await page(request, context) { try await updateKey(request, context, $0) } }
        console.post("/keys/{id}/revoke") { request, context in
            await page(request, context) { try await revokeKey(request, context, $0) }
        }
        console.get("/jobs") { request, context in await page(request, context) { try await jobsPage(request, $0) } }
        console.get("/jobs/{id}") { request, context in await page(request, context) { try await jobPage(context, $0) } }
        console.get("/usage") { request, context in await page(request, context) { try await usagePage(request, $0) } }
        console.get("/usage.csv") { request, context in await page(request, context) { _ in try await usageCSV(request) } }
    }

    // MARK: - Pages and their guard

    /// The fixed notice a redirect asked for (`?notice=`), if any.
    static func notice(_ request: Request) -> String? {
        request.uri.queryParameters.get("notice").flatMap { notices[$0] }
    }

    /// Runs a page's handler for a signed-in session (or, with `signedIn: false`, for anyone),
    /// and turns every outcome into a console response: signed out → the sign-in page; a
    /// ``ConsoleRefusal`` or ``MizanError`` → an error page with its status; anything else → 500.
    func page(
        _ request: Request, _ context: GatewayRequestContext, signedIn: Bool = true,
        _ handler: (ConsoleSessions.Session) async throws -> Response
    ) async -> Response {
        var response: Response
        var session = sessions.session(fromCookie: Self.cookies(request)[ConsoleSessions.cookieName])
        do {
            // Signed out on any instance, or before a restart: the store keeps sign-outs.
            if let signedIn = session, try await sessions.isEnded(signedIn, in: access) { session = nil }
            if signedIn {
                guard let session else {
                    // A page's own live refresh learns that it must reload; a person goes to the form.
                    response =
                        request.headers[.init("X-Mizan-Console")!] == "refresh"
                        ? Self.status(.unauthorized) : Self.redirect(to: "/console/sign-in")
                    return Self.secured(response)
                }
                response = try await handler(session)
            } else {
                response = try await handler(session ?? .init(id: "", expires: .distantPast))
            }
        } catch let refusal as ConsoleRefusal {
            response = Self.html(errorPage(refusal.message, status: refusal.status, session: session), status: refusal.status)
        } catch let error as MizanError {
            let status = HTTPResponse.Status(code: error.httpStatus)
            response = Self.html(errorPage(error.message, status: status, session: session), status: status)
        } catch {
            logger.error("console page failed", metadata: ["http.path": "\(request.uri.path)", "mizan.error": "\(error)"])
            response = Self.html(
                errorPage("Something went wrong on the gateway; its log has the details.", status: .internalServerError, session: session),
                status: .internalServerError)
        }
        return Self.secured(response)
    }

    /// Reads a form and checks its CSRF token and origin.
    func checkedForm(_ request: Request, _ session: ConsoleSessions.Session) async throws -> [String: String] {
        try Self.checkOrigin(request)
        let form = try await Self.form(request)
        guard sessions.checkCSRF(form["csrf"], for: session) else { throw ConsoleRefusal.csrf }
        return form
    }

    // MARK: - Sign-in

    func signInPage(_ request: Request, message: String? = nil, status: HTTPResponse.Status = .ok) -> Response {
        let challenge = sessions.signInChallenge()
        let body: HTML = """
            <section class="sign-in" aria-labelledby="sign-in-title">
              <h1 id="sign-in-title">Sign in to Mizan</h1>
              \(message.map { "<p class=\"notice error\" role=\"alert\">\($0)</p>" as HTML } ?? .empty)
              <form method="post" action="/console/sign-in" class="stack">
                <input type="hidden" name="csrf" value="\(challenge.token)">
                <label for="token">Admin token</label>
                <input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
                <p class="hint">The token the gateway was started with (<code>MIZAN_ADMIN_TOKEN</code>).</p>
                <button type="submit" class="primary">Sign in</button>
              </form>
            </section>
            """
        var response = Self.html(ConsoleLayout.page(title: "Sign in", current: nil, session: nil, csrf: nil, body: body), status: status)
        response.headers.append(
            HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.signInCookieName, challenge.nonce, maxAge: 1800, request)))
        return response
    }

    func signIn(_ request: Request, _ context: GatewayRequestContext) async throws -> Response {
        try Self.checkOrigin(request)
        let address = context.clientAddress ?? "unknown"
        if let wait = limiter.retryAfter(address: address) {
            logger.warning("console sign-in refused: too many failed attempts", metadata: ["mizan.client.address": "\(address)"])
            var response = signInPage(
                request, message: "Too many failed sign-ins from here; try again in \(Int(wait.rounded(.up))) seconds.",
                status: .tooManyRequests)
            response.headers[.retryAfter] = "\(Int(wait.rounded(.up)))"
            return response
        }
        if let slowdown = limiter.slowdown() {
            // Wrong tokens from many addresses: every attempt is slowed, none refused.
            try await Task.sleep(for: .seconds(slowdown))
        }
        let form = try await Self.form(request)
        guard sessions.checkSignIn(nonce: Self.cookies(request)[ConsoleSessions.signInCookieName], token: form["csrf"]) else {
            return signInPage(request, message: "The sign-in form expired; enter the token again.", status: .forbidden)
        }
        do {
            try credentials.authenticateAdmin(form["token"])
        } catch {
            limiter.failed(address: address)
            logger.warning("console sign-in failed: wrong admin token", metadata: ["mizan.client.address": "\(address)"])
            return signInPage(request, message: "That is not the admin token.", status: .unauthorized)
        }
        let (_, cookie) = sessions.start()
        logger.info("console sign-in", metadata: ["mizan.client.address": "\(address)"])
        var response = Self.redirect(to: "/console")
        response.headers.append(
            HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.cookieName, cookie, maxAge: Int(sessions.lifetime), request)))
        response.headers.append(HTTPField(name: .setCookie, value: Self.cookie(ConsoleSessions.signInCookieName, "", maxAge: 0, request)))
        return response
    }

    // MARK: - Error page

    func errorPage(_ message: String, status: HTTPResponse.Status, session: ConsoleSessions.Session?) -> HTML {
        let body: HTML = """
            <h1>\(status.reasonPhrase)</h1>
            <p class="notice error" role="alert">\(message)</p>
            <p><a href="/console">Back to the overview</a></p>
            """
        return ConsoleLayout.page(
            title: status.reasonPhrase, current: nil, session: session, csrf: session.map(sessions.csrfToken(for:)), body: body)
    }

    /// The page chrome for a signed-in session.
    func layout(_ title: String, _ current: ConsoleLayout.Section?, _ session: ConsoleSessions.Session, _ body: HTML) -> Response {
        Self.html(ConsoleLayout.page(title: title, current: current, session: session, csrf: sessions.csrfToken(for: session), body: body))
    }
}

/// A console request refused for the client's fault, shown as an error page.
struct ConsoleRefusal: Error {
    var status: HTTPResponse.Status
    var message: String

    static let csrf = ConsoleRefusal(
        status: .forbidden, message: "This form expired or did not come from this console. Reload the page and try again.")
    static let crossOrigin = ConsoleRefusal(status: .forbidden, message: "The console refuses requests sent from another site.")
}
