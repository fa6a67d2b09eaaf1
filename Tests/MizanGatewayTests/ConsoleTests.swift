import Foundation
import Logging
import MizanCore
import MizanGateway
import MizanStore
import MizanTestSupport
import NIOHTTP1
import Testing

@Suite("Console: sign-in, sessions and the security of every page")
struct ConsoleTests {
    static let pages = ["/console", "/console/nodes", "/console/keys", "/console/jobs", "/console/batches", "/console/usage"]

    @Test func isOffWithoutAnAdminToken() async throws {
        try await withGateway(adminToken: nil) { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            for path in Self.pages + ["/console/sign-in", "/console/assets/console.css"] {
                #expect(try await browser.send(.GET, path).status == 404, "\(path)")
            }
        }
    }

    @Test func signedOutEveryPageLeadsToTheSignInForm() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            for path in Self.pages + ["/console/jobs/01a249e4-b666-732c-9ba9-56a38b22c8e6", "/console/usage.csv"] {
                let answer = try await browser.send(.GET, path)
                #expect(answer.status == 303 && answer.location == "/console/sign-in", "\(path): \(answer.status)")
                #expect(!answer.text.contains("Overview"))
            }
            // A page's own refresh is told plainly, so that its script reloads.
            #expect(try await browser.send(.GET, "/console/nodes", headers: [("X-Mizan-Console", "refresh")]).status == 401)
            // Forms too: nothing is done without a session.
            let post = try await browser.send(.POST, "/console/keys", form: ["name": "sneaky"])
            #expect(post.status == 303 && post.location == "/console/sign-in")
            #expect(try await gateway.store.apiKeys().count == 1, "no key was created")
            // The bearer admin token is not a console credential.
            let bearer = try await browser.send(.GET, "/console/keys", headers: [("Authorization", "Bearer \(Harness.adminToken)")])
            #expect(bearer.status == 303)
        }
    }

    @Test func signsInWithTheAdminTokenToAnHttpOnlyStrictExpiringCookie() async throws {
        let sink = CapturingLogHandler.Sink()
        let logger = Logger(label: "mizan.gateway") { _ in CapturingLogHandler(sink: sink) }
        try await withGateway(logger: logger) { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            let form = try await browser.send(.GET, "/console/sign-in")
            #expect(form.status == 200 && form.text.contains("type=\"password\""))
            #expect(form.headers["Set-Cookie"].first?.hasPrefix("mizan_console_signin=") == true)

            let wrong = try await browser.send(.POST, "/console/sign-in", form: ["csrf": form.csrf ?? "", "token": "wrong-token"])
            #expect(wrong.status == 401 && wrong.text.contains("That is not the admin token."))
            #expect(!wrong.text.contains("wrong-token"))
            #expect(browser.cookies["mizan_console"] == nil)

            // A form not loaded by this browser (no sign-in cookie, or another form's token) is refused.
            let stranger = ConsoleClient(port: gateway.port)
            let forged = try await stranger.send(.POST, "/console/sign-in", form: ["csrf": form.csrf ?? "", "token": Harness.adminToken])
            #expect(forged.status == 403 && stranger.cookies["mizan_console"] == nil)

            let fresh = try await browser.send(.GET, "/console/sign-in")
            let signedIn = try await browser.send(.POST, "/console/sign-in", form: ["csrf": fresh.csrf ?? "", "token": Harness.adminToken])
            #expect(signedIn.status == 303 && signedIn.location == "/console")
            let cookie = try #require(signedIn.headers["Set-Cookie"].first { $0.hasPrefix("mizan_console=") })
            for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800"] {
                #expect(cookie.contains(attribute), "\(cookie)")
            }
            #expect(!cookie.contains("Secure"), "plain HTTP: a Secure cookie would never come back")
            #expect(!cookie.contains(Harness.adminToken) && !signedIn.text.contains(Harness.adminToken))
            let overview = try await browser.send(.GET, "/console")
            #expect(overview.status == 200 && overview.text.contains("<h1>Overview</h1>"))
            #expect(!overview.text.contains(Harness.adminToken))
            let again = try await browser.send(.GET, "/console/sign-in")
            #expect(again.status == 303 && again.location == "/console", "signed in, the form leads to the console")

            // Behind a TLS proxy the cookie is Secure.
            let proxied = ConsoleClient(port: gateway.port)
            let proxiedForm = try await proxied.send(.GET, "/console/sign-in", headers: [("X-Forwarded-Proto", "https")])
            let secure = try await proxied.send(
                .POST, "/console/sign-in", form: ["csrf": proxiedForm.csrf ?? "", "token": Harness.adminToken],
                headers: [("X-Forwarded-Proto", "https")])
            #expect(secure.headers["Set-Cookie"].contains { $0.hasPrefix("mizan_console=") && $0.contains("; Secure") })

            // The log says who signed in and who failed, never the token.
            let lines = sink.all.map { "\($0.message) \($0.metadata)" }
            #expect(lines.contains { $0.contains("console sign-in failed") })
            #expect(lines.contains { $0.hasPrefix("console sign-in ") && !$0.contains("failed") })
            #expect(!lines.contains { $0.contains(Harness.adminToken) || $0.contains("wrong-token") })
        }
    }

    @Test func aTamperedOrEndedSessionIsRefused() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let cookie = try #require(browser.cookies["mizan_console"])
            // Another expiry under the same signature.
            var parts = cookie.split(separator: ".").map(String.init)
            parts[1] = String(Int(parts[1])! + 86_400)
            let tampered = ConsoleClient(port: gateway.port)
            tampered.cookies["mizan_console"] = parts.joined(separator: ".")
            #expect(try await tampered.send(.GET, "/console").status == 303)
            let garbage = ConsoleClient(port: gateway.port)
            garbage.cookies["mizan_console"] = String(repeating: "x", count: 5000)
            #expect(try await garbage.send(.GET, "/console").status == 303)

            // Signing out ends the session even for a copy of its cookie.
            let copy = ConsoleClient(port: gateway.port)
            copy.cookies["mizan_console"] = cookie
            #expect(try await copy.send(.GET, "/console").status == 200)
            let out = try await browser.submit("/console/sign-out", from: "/console", [:])
            #expect(out.status == 303 && out.location == "/console/sign-in")
            #expect(browser.cookies["mizan_console"] == nil, "the cookie is removed")
            #expect(try await copy.send(.GET, "/console").status == 303)
        }
    }

    @Test func failedSignInsAreLimited() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            for _ in 0..<5 {
                #expect(try await browser.signIn("wrong").status == 401)
            }
            let limited = try await browser.signIn("wrong")
            #expect(limited.status == 429 && limited.text.contains("Too many failed sign-ins"))
            #expect(Int(limited.headers["Retry-After"].first ?? "") ?? 0 >= 1)
            // Even the right token waits from that address: the limit is on attempts, not only on failures.
            #expect(try await browser.signIn(Harness.adminToken).status == 429)
            #expect(browser.cookies["mizan_console"] == nil)
        }
    }

    /// Wrong tokens from many addresses in 127.0.0.0/8 slow sign-ins down; they never lock the
    /// operator out: the right token from another address gets in.
    @Test func wrongTokensFromManyAddressesNeverLockTheOperatorOut() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let challenge = try await ConsoleClient(port: gateway.port).send(.GET, "/console/sign-in")
            let nonce = try #require(
                challenge.headers["Set-Cookie"].first { $0.hasPrefix("mizan_console_signin=") }?.split(separator: ";")[0]
                    .split(separator: "=")[1])
            let token = try #require(challenge.csrf)
            let body = "csrf=\(token)&token=wrong-token"
            let statuses = try await withThrowingTaskGroup(of: String.self) { group in
                for index in 0..<60 {
                    group.addTask {
                        let connection = try await RawConnection.open(port: gateway.port, from: "127.0.1.\(index + 1)")
                        try await connection.send(
                            "POST /console/sign-in HTTP/1.1\r\nHost: 127.0.0.1:\(gateway.port)\r\nCookie: mizan_console_signin=\(nonce)\r\n"
                                + "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.utf8.count)\r\n"
                                + "Connection: close\r\n\r\n\(body)")
                        _ = await connection.waitForClose(timeout: .seconds(10))
                        return String(connection.received.prefix(12))
                    }
                }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(
                statuses.allSatisfy { $0 == "HTTP/1.1 401" }, "every wrong token is refused as wrong, none locked out: \(Set(statuses))")
            // 60 failures are past the bound for all addresses: the operator is slowed, not refused.
            let operatorBrowser = ConsoleClient(port: gateway.port)
            let started = ContinuousClock.now
            let signedIn = try await operatorBrowser.signIn(Harness.adminToken)
            #expect(signedIn.status == 303 && operatorBrowser.cookies["mizan_console"] != nil, "\(signedIn.status)")
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    /// A signed-out session stays signed out for a gateway that starts again on the same store
    /// (or another instance sharing it): sign-outs are kept in the store.
    @Test func aSignedOutSessionStaysSignedOutAfterARestart() async throws {
        let store = InMemoryStore()
        let cookie: String = try await withGateway(store: store) { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let cookie = try #require(browser.cookies["mizan_console"])
            #expect(try await browser.submit("/console/sign-out", from: "/console", [:]).status == 303)
            return cookie
        }
        try await withGateway(store: store) { (restarted: Harness) async throws in
            let copy = ConsoleClient(port: restarted.port)
            copy.cookies["mizan_console"] = cookie
            #expect(try await copy.send(.GET, "/console").status == 303, "the old cookie leads to the sign-in form")
            let fresh = ConsoleClient(port: restarted.port)
            try await fresh.signIn(Harness.adminToken)
            #expect(try await fresh.send(.GET, "/console").status == 200, "a new sign-in works")
        }
    }

    @Test func everyPageCarriesTheSecurityHeadersAndNoInlineCode() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            // The sign-in form as a signed-out browser sees it; the pages signed in.
            let signedOut = ConsoleClient(port: gateway.port)
            for path in Self.pages + ["/console/sign-in"] {
                let answer = try await (path == "/console/sign-in" ? signedOut : browser).send(.GET, path)
                #expect(answer.status == 200, "\(path)")
                let policy = answer.headers["Content-Security-Policy"].first ?? ""
                #expect(
                    policy.contains("default-src 'none'") && policy.contains("script-src 'self'") && !policy.contains("unsafe"), "\(path)")
                #expect(policy.contains("frame-ancestors 'none'"))
                #expect(answer.headers["X-Frame-Options"].first == "DENY")
                #expect(answer.headers["Cache-Control"].first == "no-store")
                #expect(answer.headers["X-Content-Type-Options"].first == "nosniff")
                // Scripts only from files; no inline handlers or styles.
                #expect(
                    !answer.text.contains("<script>") && !answer.text.contains(" onclick=") && !answer.text.contains(" style="), "\(path)")
                #expect(answer.text.contains("<script src=\"/console/assets/console.js"), "\(path)")
            }
            for asset in ["/console/assets/console.css", "/console/assets/console.js"] {
                let answer = try await browser.send(.GET, asset)
                #expect(answer.status == 200 && answer.text.count > 500, "\(asset)")
            }
        }
    }

    @Test func formsWithoutTheirTokenOrFromAnotherSiteAreRefused() async throws {
        try await withGateway { (gateway: Harness) async throws in
            let browser = ConsoleClient(port: gateway.port)
            try await browser.signIn(Harness.adminToken)
            let missing = try await browser.send(.POST, "/console/keys", form: ["name": "no-token"])
            #expect(missing.status == 403 && missing.text.contains("This form expired"))
            let wrong = try await browser.send(.POST, "/console/nodes", form: ["name": "n", "csrf": String(repeating: "0", count: 64)])
            #expect(wrong.status == 403)
            let csrf = try await browser.send(.GET, "/console/keys").csrf ?? ""
            let crossSite = try await browser.send(
                .POST, "/console/keys", form: ["name": "x", "csrf": csrf], headers: [("Origin", "https://evil.example")])
            #expect(crossSite.status == 403 && crossSite.text.contains("another site"))
            let fetchedCrossSite = try await browser.send(
                .POST, "/console/keys", form: ["name": "x", "csrf": csrf], headers: [("Sec-Fetch-Site", "cross-site")])
            #expect(fetchedCrossSite.status == 403)
            let json = try await browser.send(.POST, "/console/keys", headers: [("Content-Type", "application/json")])
            #expect(json.status == 415 || json.status == 403)
            #expect(try await gateway.store.apiKeys().count == 1, "nothing was created")
        }
    }
}
