import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanCore
import MizanDispatch
import MizanGateway
import MizanStore

/// The operator's web console under `/console`: server-rendered pages for the overview, nodes,
/// keys, jobs, batches and usage, signed in with the admin token. It is served only when the gateway
/// has an admin token.
///
/// The controller builds the page types from the gateway's parts — each holds only what it
/// reads and changes — registers their routes, and guards every page: the session check
/// (``page(_:_:)``), the CSRF and origin checks of every form (``action(_:_:)``), and the
/// error page and security headers of every answer (``respond(_:_:)``).
///
/// Every page is built on the server from the same operations as the admin API; the page's
/// small script only localizes times, copies secrets, asks for confirmations and refreshes
/// the live parts. Responses carry a strict `Content-Security-Policy` (no inline script or
/// style), `X-Frame-Options: DENY` and `Cache-Control: no-store`.
struct ConsoleController: GatewayRoutes {
    /// The sign-in sessions.
    let sessions: ConsoleSessions
    /// Where sign-outs are kept (the guard asks whether a session was signed out).
    let access: any AccessStore
    /// Where a page that failed is logged.
    let logger: Logger
    /// Signing in and out.
    let signIn: SignInPages
    /// The overview.
    let overview: OverviewPage
    /// The nodes page and its actions.
    let nodes: NodesPages
    /// The keys pages and their actions.
    let keys: KeysPages
    /// The jobs pages.
    let jobs: JobsPages
    /// The batches pages and their cancel.
    let batches: BatchesPages
    /// The usage page and its CSV.
    let usage: UsagePages

    /// The console of a gateway, when it has an admin token to sign in with.
    /// - Parameters:
    ///   - parts: The gateway's parts.
    ///   - sessionLifetime: How long a sign-in lasts.
    init?(_ parts: GatewayParts, sessionLifetime: Duration) {
        guard let hash = parts.credentials.adminTokenHash else { return nil }
        let sessions = ConsoleSessions(adminTokenHash: hash, lifetime: sessionLifetime.timeInterval, logger: parts.logger)
        self.sessions = sessions
        access = parts.access
        logger = parts.logger
        signIn = SignInPages(
            sessions: sessions, credentials: parts.credentials, access: parts.access, limiter: SignInLimiter(), logger: parts.logger)
        overview = OverviewPage(dispatcher: parts.dispatcher, activity: parts.activity)
        nodes = NodesPages(dispatcher: parts.dispatcher)
        keys = KeysPages(credentials: parts.credentials, access: parts.access)
        jobs = JobsPages(dispatcher: parts.dispatcher, routes: parts.routes)
        batches = BatchesPages(batches: parts.batches, access: parts.access, cancelBatch: parts.cancelBatch)
        usage = UsagePages(access: parts.access)
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        let console = router.group("/console")
        console.get("/assets/console.css") { _, _ in ConsoleHTTP.asset(ConsoleAssets.css, type: "text/css; charset=utf-8") }
        console.get("/assets/console.js") { _, _ in ConsoleHTTP.asset(ConsoleAssets.javascript, type: "text/javascript; charset=utf-8") }
        console.get("/sign-in") { request, _ in
            await respond(request) { session in
                // Signed in already: the console itself.
                if let session, session.expires > Date() { return ConsoleHTTP.redirect(to: "/console") }
                return signIn.form(request)
            }
        }
        console.post("/sign-in") { request, context in
            await respond(request) { _ in try await signIn.signIn(request, address: context.clientAddress) }
        }
        console.post("/sign-out") { request, _ in
            await action(request) { viewer, _ in await signIn.signOut(viewer.session, request) }
        }
        console.get("") { request, _ in await page(request) { viewer in try await overview.page(for: viewer) } }
        console.get("/nodes") { request, _ in
            await page(request) { viewer in try await nodes.page(for: viewer, notice: Self.notice(request)) }
        }
        console.post("/nodes") { request, _ in
            await action(request) { viewer, form in try await nodes.create(form, gatewayURL: ConsoleHTTP.origin(request), for: viewer) }
        }
        console.post("/nodes/{id}/revoke") { request, context in
            await action(request) { viewer, form in try await nodes.revoke(id: context.parameters.get("id"), form, for: viewer) }
        }
        console.get("/keys") { request, _ in
            await page(request) { viewer in try await keys.page(for: viewer, notice: Self.notice(request)) }
        }
        console.post("/keys") { request, _ in await action(request) { viewer, form in try await keys.create(form, for: viewer) } }
        console.get("/keys/{id}") { request, context in
            await page(request) { viewer in
                try await keys.keyPage(id: context.parameters.get("id"), for: viewer, notice: Self.notice(request))
            }
        }
        console.post("/keys/{id}") { request, context in
            await action(request) { viewer, form in try await keys.update(id: context.parameters.get("id"), form, for: viewer) }
        }
        console.post("/keys/{id}/revoke") { request, context in
            await action(request) { viewer, form in try await keys.revoke(id: context.parameters.get("id"), form, for: viewer) }
        }
        console.get("/jobs") { request, _ in
            let query = request.uri.queryParameters
            return await page(request) { viewer in try await jobs.page(query: { query.get($0) }, for: viewer) }
        }
        console.get("/jobs/{id}") { request, context in
            await page(request) { viewer in try await jobs.jobPage(id: context.parameters.get("id"), for: viewer) }
        }
        console.get("/batches") { request, _ in
            let query = request.uri.queryParameters
            return await page(request) { viewer in
                try await batches.page(query: { query.get($0) }, for: viewer, notice: Self.noticeAsked(request))
            }
        }
        console.get("/batches/{id}") { request, context in
            await page(request) { viewer in
                try await batches.batchPage(id: context.parameters.get("id"), for: viewer, notice: Self.noticeAsked(request))
            }
        }
        console.post("/batches/{id}/cancel") { request, context in
            await action(request) { viewer, form in try await batches.cancel(id: context.parameters.get("id"), form, for: viewer) }
        }
        console.get("/usage") { request, _ in
            let query = request.uri.queryParameters
            return await page(request) { viewer in try await usage.page(query: { query.get($0) }, for: viewer) }
        }
        console.get("/usage.csv") { request, _ in
            let query = request.uri.queryParameters
            return await page(request) { _ in try await usage.csv(query: { query.get($0) }) }
        }
    }

    // MARK: - The guards

    /// The notice a redirect asked for (`?notice=`), if any.
    static func notice(_ request: Request) -> String? {
        noticeAsked(request)?.text
    }

    /// The notice a redirect asked for (`?notice=`), if any, with whether it reports an error.
    static func noticeAsked(_ request: Request) -> ConsoleNotice? {
        ConsoleNotice(query: request.uri.queryParameters.get("notice"))
    }

    /// Runs a page's handler for a signed-in viewer; signed out, a person is sent to the
    /// sign-in form and a page's own live refresh gets a 401 (it reloads).
    func page(_ request: Request, _ handler: (ConsoleViewer) async throws -> Response) async -> Response {
        await respond(request) { session in
            guard let session else {
                // A page's own live refresh learns that it must reload; a person goes to the form.
                return request.headers[.init("X-Mizan-Console")!] == "refresh"
                    ? ConsoleHTTP.status(.unauthorized) : ConsoleHTTP.redirect(to: "/console/sign-in")
            }
            return try await handler(ConsoleViewer(session, of: sessions))
        }
    }

    /// Runs a form's handler for a signed-in viewer, once the form is read and its CSRF token
    /// and origin are checked.
    func action(_ request: Request, _ handler: (ConsoleViewer, [String: String]) async throws -> Response) async -> Response {
        await page(request) { viewer in
            let form = try await checkedForm(request, viewer.session)
            return try await handler(viewer, form)
        }
    }

    /// Runs a handler with the request's session (`nil` when signed out or signed out anywhere),
    /// and turns every outcome into a console response with its security headers: a
    /// ``ConsoleRefusal`` or ``MizanError`` → an error page with its status; anything else → 500.
    func respond(_ request: Request, _ handler: (ConsoleSessions.Session?) async throws -> Response) async -> Response {
        var response: Response
        var session = sessions.session(fromCookie: ConsoleHTTP.cookies(request)[ConsoleSessions.cookieName])
        do {
            // Signed out on any instance, or before a restart: the store keeps sign-outs.
            if let signedIn = session, try await sessions.isEnded(signedIn, in: access) { session = nil }
            response = try await handler(session)
        } catch let refusal as ConsoleRefusal {
            response = ConsoleHTTP.html(errorPage(refusal.message, status: refusal.status, session: session), status: refusal.status)
        } catch let error as MizanError {
            let status = HTTPResponse.Status(code: error.httpStatus)
            response = ConsoleHTTP.html(errorPage(error.message, status: status, session: session), status: status)
        } catch {
            logger.error("console page failed", metadata: ["http.path": "\(request.uri.path)", "mizan.error": "\(error)"])
            response = ConsoleHTTP.html(
                errorPage("Something went wrong on the gateway; its log has the details.", status: .internalServerError, session: session),
                status: .internalServerError)
        }
        return ConsoleHTTP.secured(response)
    }

    /// Reads a form and checks its CSRF token and origin.
    func checkedForm(_ request: Request, _ session: ConsoleSessions.Session) async throws -> [String: String] {
        try ConsoleHTTP.checkOrigin(request)
        let form = try await ConsoleHTTP.form(request)
        guard sessions.checkCSRF(form["csrf"], for: session) else { throw ConsoleRefusal.csrf }
        return form
    }

    /// The error page: the status, the message and a way back, in the chrome of the session
    /// (if any).
    func errorPage(_ message: String, status: HTTPResponse.Status, session: ConsoleSessions.Session?) -> HTML {
        let body: HTML = """
            <h1>\(status.reasonPhrase)</h1>
            <p class="notice error" role="alert">\(message)</p>
            <p><a href="/console">Back to the overview</a></p>
            """
        return ConsoleLayout.page(
            title: status.reasonPhrase, current: nil, session: session, csrf: session.map(sessions.csrfToken(for:)), body: body)
    }
}
