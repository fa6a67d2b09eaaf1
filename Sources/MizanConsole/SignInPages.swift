import Foundation
import HTTPTypes
import Hummingbird
import Logging
import MizanGateway
import MizanStore

/// Signing in to the console with the admin token, and signing out: the sign-in form (tied to
/// the browser that loaded it), the check of the token with failed attempts bounded, and the
/// session cookie set and removed.
struct SignInPages: Sendable {
    /// The sessions: their cookies and the sign-in form's token.
    let sessions: ConsoleSessions
    /// Checks the admin token.
    let credentials: Credentials
    /// Where sign-outs are kept, for every instance and a restart.
    let access: any AccessStore
    /// Bounds failed sign-ins.
    let limiter: SignInLimiter
    /// Where sign-ins and refusals are logged.
    let logger: Logger

    /// The sign-in form, with a new challenge in its hidden field and its cookie.
    /// - Parameters:
    ///   - request: The request it answers (whether its cookie must be `Secure`).
    ///   - message: A refusal shown above the form.
    ///   - status: The response's status.
    func form(_ request: Request, message: String? = nil, status: HTTPResponse.Status = .ok) -> Response {
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
        var response = ConsoleHTTP.html(
            ConsoleLayout.page(title: "Sign in", current: nil, session: nil, csrf: nil, body: body), status: status)
        response.headers.append(
            HTTPField(
                name: .setCookie, value: ConsoleHTTP.cookie(ConsoleSessions.signInCookieName, challenge.nonce, maxAge: 1800, request)))
        return response
    }

    /// Signs in with the form's admin token: a session cookie and a redirect to the overview; or
    /// the form again with why not (an expired form, a wrong token, too many failures from the
    /// client's address).
    /// - Parameters:
    ///   - request: The sign-in form's request.
    ///   - address: The client's address, whose failures are counted.
    func signIn(_ request: Request, address: String?) async throws -> Response {
        try ConsoleHTTP.checkOrigin(request)
        let address = address ?? "unknown"
        if let wait = limiter.retryAfter(address: address) {
            logger.warning("console sign-in refused: too many failed attempts", metadata: ["mizan.client.address": "\(address)"])
            var response = form(
                request, message: "Too many failed sign-ins from here; try again in \(Int(wait.rounded(.up))) seconds.",
                status: .tooManyRequests)
            response.headers[.retryAfter] = "\(Int(wait.rounded(.up)))"
            return response
        }
        if let slowdown = limiter.slowdown() {
            // Wrong tokens from many addresses: every attempt is slowed, none refused.
            try await Task.sleep(for: .seconds(slowdown))
        }
        let fields = try await ConsoleHTTP.form(request)
        guard sessions.checkSignIn(nonce: ConsoleHTTP.cookies(request)[ConsoleSessions.signInCookieName], token: fields["csrf"]) else {
            return form(request, message: "The sign-in form expired; enter the token again.", status: .forbidden)
        }
        do {
            try credentials.authenticateAdmin(fields["token"])
        } catch {
            limiter.failed(address: address)
            logger.warning("console sign-in failed: wrong admin token", metadata: ["mizan.client.address": "\(address)"])
            return form(request, message: "That is not the admin token.", status: .unauthorized)
        }
        let (_, cookie) = sessions.start()
        logger.info("console sign-in", metadata: ["mizan.client.address": "\(address)"])
        var response = ConsoleHTTP.redirect(to: "/console")
        response.headers.append(
            HTTPField(
                name: .setCookie,
                value: ConsoleHTTP.cookie(ConsoleSessions.cookieName, cookie, maxAge: Int(sessions.lifetime), request)))
        response.headers.append(
            HTTPField(name: .setCookie, value: ConsoleHTTP.cookie(ConsoleSessions.signInCookieName, "", maxAge: 0, request)))
        return response
    }

    /// Signs a session out, everywhere: removes its cookie and leads to the sign-in form.
    /// - Parameters:
    ///   - session: The session to end.
    ///   - request: The sign-out form's request (whether the cookie is `Secure`).
    func signOut(_ session: ConsoleSessions.Session, _ request: Request) async -> Response {
        await sessions.end(session, in: access)
        var response = ConsoleHTTP.redirect(to: "/console/sign-in")
        response.headers.append(
            HTTPField(name: .setCookie, value: ConsoleHTTP.cookie(ConsoleSessions.cookieName, "", maxAge: 0, request)))
        return response
    }
}
