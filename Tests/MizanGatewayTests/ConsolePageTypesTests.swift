import Foundation
import HTTPTypes
import Hummingbird
import MizanCore
import MizanDispatch
import MizanGateway
import MizanStore
import NIOCore
import Testing

@testable import MizanConsole

/// The console's page types on their own: each rendered against an in-memory store, without a
/// router or a server.
@Suite("Console page types, without a server")
struct ConsolePageTypesTests {
    /// A signed-in viewer with a known CSRF token.
    static let viewer = ConsoleViewer(
        session: ConsoleSessions.Session(id: String(repeating: "a", count: 32), expires: .distantFuture), csrf: "csrf-of-the-tests")

    /// The parts the page types are made of, over one in-memory store.
    struct Parts {
        let store = InMemoryStore()
        let dispatcher: Dispatcher
        let credentials: Credentials

        init() {
            dispatcher = Dispatcher(store: store)
            credentials = Credentials(store: store, adminToken: "admin-token-of-the-tests")
        }
    }

    /// A response's body as text.
    static func text(_ response: Response) async throws -> String {
        let collected = Collected()
        try await response.body.write(CollectingWriter(into: collected))
        return String(buffer: collected.buffer)
    }

    /// What a ``CollectingWriter`` wrote.
    final class Collected: @unchecked Sendable {
        var buffer = ByteBuffer()
    }

    /// Writes a response body into a ``Collected``.
    struct CollectingWriter: ResponseBodyWriter {
        let into: Collected

        mutating func write(_ buffer: ByteBuffer) async throws {
            var buffer = buffer
            into.buffer.writeBuffer(&buffer)
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }

    /// A request to the console as a browser of the same origin sends it.
    static func request(
        _ method: HTTPRequest.Method, _ path: String, headers: HTTPFields = [:], form: String? = nil
    ) -> Request {
        var fields = headers
        if form != nil { fields[.contentType] = "application/x-www-form-urlencoded" }
        let head = HTTPRequest(method: method, scheme: "http", authority: "127.0.0.1:8080", path: path, headerFields: fields)
        return Request(head: head, body: RequestBody(buffer: ByteBuffer(string: form ?? "")))
    }

    @Test func theOverviewOfAnEmptyGatewaySaysSoInTheViewersChrome() async throws {
        let parts = Parts()
        let page = OverviewPage(dispatcher: parts.dispatcher, activity: RecentActivity())
        let response = try await page.page(for: Self.viewer)
        #expect(response.status == .ok && response.headers[.contentType] == "text/html; charset=utf-8")
        let text = try await Self.text(response)
        #expect(text.contains("<title>Overview · Mizan</title>") && text.contains("aria-current=\"page\">Overview</a>"))
        #expect(text.contains("No job is waiting for a node.") && text.contains("0 healthy"))
        #expect(text.contains("name=\"csrf\" value=\"csrf-of-the-tests\""), "the sign-out form carries the viewer's token")
    }

    @Test func aNodeIsCreatedWithItsCommandRefusedABadNameAndRevokedOnceConfirmed() async throws {
        let parts = Parts()
        let nodes = NodesPages(dispatcher: parts.dispatcher)
        #expect(try await Self.text(nodes.page(for: Self.viewer)).contains("No nodes yet"))

        let refused = try await nodes.create(["name": ""], gatewayURL: "https://gateway.example", for: Self.viewer)
        #expect(refused.status == .badRequest)
        #expect(try await Self.text(refused).contains("class=\"notice error\""))
        #expect(try await parts.dispatcher.nodes().isEmpty)

        let created = try await nodes.create(["name": "GPU box"], gatewayURL: "https://gateway.example", for: Self.viewer)
        #expect(created.status == .created)
        let text = try await Self.text(created)
        #expect(text.contains("Node “GPU box” created"))
        #expect(text.contains("mizan-agent --gateway https://gateway.example --token-file ~/.config/mizan/gpu-box.token"))
        let node = try #require(try await parts.dispatcher.nodes().first)

        let asked = try await nodes.revoke(id: node.id.description, [:], for: Self.viewer)
        let question = try await Self.text(asked)
        #expect(asked.status == .ok && question.contains("Revoke the node “GPU box”?"))
        #expect(question.contains("action=\"/console/nodes/\(node.id.description)/revoke\""))
        #expect(try await parts.dispatcher.nodes().first?.status != .revoked, "nothing happens before the confirmation")

        let revoked = try await nodes.revoke(id: node.id.description, ["confirmed": "1"], for: Self.viewer)
        #expect(revoked.status == .seeOther && revoked.headers[.location] == "/console/nodes?notice=node-revoked")
        #expect(try await parts.dispatcher.nodes().first?.status == .revoked)

        await #expect(throws: ConsoleRefusal.self) { try await nodes.revoke(id: "not-a-node", ["confirmed": "1"], for: Self.viewer) }
    }

    @Test func aKeyIsIssuedOnceChangedAndRevoked() async throws {
        let parts = Parts()
        let keys = KeysPages(credentials: parts.credentials, access: parts.store)

        let refused = try await keys.create(["name": "team-a", "rpm": "0"], for: Self.viewer)
        #expect(refused.status == .badRequest)
        #expect(try await Self.text(refused).contains("Requests per minute must be a whole number"))

        let created = try await keys.create(["name": "team-a", "rpm": "60"], for: Self.viewer)
        #expect(created.status == .created)
        #expect(try await Self.text(created).contains("id=\"new-key-secret\" readonly value=\"mzn_sk_"))
        let key = try #require(try await parts.store.apiKeys().first)
        #expect(key.policy.limits?.requestsPerMinute == 60)

        let page = try await Self.text(keys.keyPage(id: key.id, for: Self.viewer, notice: ConsoleNotice.keySaved.text))
        #expect(page.contains("Key “team-a”") && page.contains("value=\"60\"") && page.contains("The key&#39;s settings were saved."))

        let badWeight = try await keys.update(id: key.id, ["name": "team-a", "rpm": "60", "weight": "101"], for: Self.viewer)
        #expect(badWeight.status == .badRequest)
        let badPage = try await Self.text(badWeight)
        #expect(badPage.contains("The weight must be a whole number from 1 to 100.") && badPage.contains("value=\"101\""), "kept as typed")
        let queued = try await keys.update(
            id: key.id, ["name": "team-a", "rpm": "60", "priority": "interactive", "weight": "3", "maxQueued": "20"], for: Self.viewer)
        #expect(queued.status == .seeOther)
        let withQueueing = try #require(try await parts.store.apiKeys().first)
        #expect(withQueueing.policy == KeyPolicy(limits: .init(requestsPerMinute: 60), priority: .interactive, weight: 3, maxQueued: 20))
        let listed = try await Self.text(keys.page(for: Self.viewer))
        #expect(listed.contains("<td data-label=\"Queueing\">interactive · weight 3 · 20 waiting at most</td>"), "\(listed)")
        let detail = try await Self.text(keys.keyPage(id: key.id, for: Self.viewer))
        #expect(detail.contains("<dt>Queueing</dt><dd>interactive · weight 3 · 20 waiting at most</dd>"))
        #expect(detail.contains("<option value=\"interactive\" selected>") && detail.contains("id=\"key-weight\""))

        let saved = try await keys.update(id: key.id, ["name": "team-b", "tpm": "5000"], for: Self.viewer)
        #expect(saved.status == .seeOther && saved.headers[.location] == "/console/keys/\(key.id)?notice=key-saved")
        let changed = try #require(try await parts.store.apiKeys().first)
        #expect(changed.name == "team-b" && changed.policy.limits == KeyPolicy.Limits(tokensPerMinute: 5000))

        let asked = try await keys.revoke(id: key.id, [:], for: Self.viewer)
        #expect(asked.status == .ok)
        #expect(try await Self.text(asked).contains("name=\"confirmed\" value=\"1\""))
        let revoked = try await keys.revoke(id: key.id, ["confirmed": "1"], for: Self.viewer)
        #expect(revoked.headers[.location] == "/console/keys?notice=key-revoked")
        await #expect(throws: ConsoleRefusal.self) { try await keys.keyPage(id: key.id, for: Self.viewer) }
    }

    @Test func theKeyFormReadsBackWhatAKeysSettingsFillItWith() throws {
        let form = [
            "name": "team-a", "models": "m1, m2", "rpm": "60", "tpm": "5000", "concurrency": "2", "budgetTokens": "1000",
            "budgetPeriod": "day", "expires": "2099-01-01",
        ]
        let policy = try KeyForm.policy(from: form)
        #expect(policy.models == ["m1", "m2"] && policy.budget == KeyPolicy.Budget(tokens: 1000, period: .day))
        let key = APIKey(id: "k1", name: "team-a", prefix: "mzn_sk_ab", createdAt: Date(), policy: policy)
        #expect(KeyForm.values(of: key) == form)
        #expect(KeysPages.limitsText(policy.limits) == "60 requests/min · 5,000 tokens/min · 2 at once")
        #expect(KeysPages.budgetText(policy.budget) == "1,000 tokens a day")
        #expect(throws: MizanError.self) { try KeyForm.policy(from: ["budgetTokens": "5", "budgetPeriod": "week"]) }
    }

    @Test func theKeyFormCarriesTheQueueingSettings() throws {
        let form = ["name": "batch-jobs", "priority": "batch", "weight": "4", "maxQueued": "1500"]
        let policy = try KeyForm.policy(from: form)
        #expect(policy == KeyPolicy(priority: .batch, weight: 4, maxQueued: 1500))
        let key = APIKey(id: "k1", name: "batch-jobs", prefix: "mzn_sk_ab", createdAt: Date(), policy: policy)
        #expect(KeyForm.values(of: key) == form)
        #expect(KeysPages.queueingText(policy) == "batch · weight 4 · 1,500 waiting at most")
        #expect(KeysPages.queueingText(KeyPolicy()) == "standard")
        // The standard class is the default: chosen in the form, it sets nothing.
        let standard = try KeyForm.policy(from: ["name": "plain", "priority": "standard", "weight": "", "maxQueued": ""])
        #expect(standard == KeyPolicy() && !standard.isCounted)
        // The fields: a select of the three classes with the key's selected, two number inputs.
        let fields = KeyForm.fields(form, nameRequired: true).description
        #expect(fields.contains(#"<select id="key-priority" name="priority">"#))
        #expect(
            fields.contains(
                #"<option value="interactive">interactive</option><option value="standard">standard</option><option value="batch" selected>batch</option>"#
            ), "\(fields)")
        #expect(fields.contains(#"name="weight" type="number" min="1" max="100" value="4""#))
        #expect(fields.contains(#"name="maxQueued" type="number" min="1" max="1000000" value="1500""#))
        let empty = KeyForm.fields([:], nameRequired: true).description
        #expect(empty.contains(#"<option value="standard" selected>standard</option>"#), "a new key is standard")
        // Bad values name the field.
        for (form, field) in [
            (["priority": "urgent"], "The priority must be interactive, standard or batch"),
            (["weight": "0"], "The weight must be a whole number from 1 to 100"), (["weight": "101"], "The weight"),
            (["maxQueued": "0"], "The most requests waiting must be a whole number from 1 to 1000000"),
            (["maxQueued": "many"], "The most requests waiting"),
        ] {
            let error = #expect(throws: MizanError.self) { try KeyForm.policy(from: form) }
            #expect(error?.message.hasPrefix(field) == true, "\(String(describing: error))")
        }
    }

    @Test func jobsAreListedAndABadFilterIsRefused() async throws {
        let parts = Parts()
        let jobs = JobsPages(dispatcher: parts.dispatcher, routes: RouteTable(routes: []))
        let empty = try await Self.text(jobs.page(query: { _ in nil }, for: Self.viewer))
        #expect(empty.contains("No jobs yet") && !empty.contains("rel=\"next\""))
        let filtered = try await Self.text(jobs.page(query: { $0 == "state" ? "failed" : nil }, for: Self.viewer))
        #expect(filtered.contains("No job matches these filters.") && filtered.contains("<option value=\"failed\" selected>"))
        await #expect(throws: ConsoleRefusal.self) {
            try await jobs.page(query: { $0 == "state" ? "nonsense" : nil }, for: Self.viewer)
        }
        await #expect(throws: ConsoleRefusal.self) { try await jobs.jobPage(id: "no-such-job", for: Self.viewer) }
    }

    @Test func batchesAreListedShownAndAnEndedOneIsNotCancelled() async throws {
        let parts = Parts()
        let key = try await parts.credentials.issueKey(name: "team-<a>").key
        let refusing = BatchesPages(
            batches: parts.store, access: parts.store, cancelBatch: { _ in throw MizanError(.conflict, "ended") })
        let empty = try await Self.text(refusing.page(query: { _ in nil }, for: Self.viewer))
        #expect(empty.contains("No batches yet") && empty.contains("aria-current=\"page\">Batches</a>"))

        let batch = try await ConsolePagesTests.batch(in: parts.store, key: key.id, lines: 2)
        _ = try await parts.store.moveBatch(batch.id, to: .inProgress, from: [.validating], failure: nil, now: Date())
        let line = Data(#"{"id":"r","custom_id":"line-1"}"#.utf8)
        _ = try await parts.store.finishLines(
            batchID: batch.id, [LineResult(number: 1, succeeded: true, line: line, place: .node)], now: Date())
        let list = try await Self.text(refusing.page(query: { _ in nil }, for: Self.viewer))
        #expect(list.contains("team-&lt;a&gt;") && list.contains("1 / 2") && list.contains("1 nodes · 0 routes"), "\(list)")
        #expect(list.contains(ConsoleLayout.badge("in progress", kind: "info").description))
        #expect(
            try await Self.text(refusing.page(query: { $0 == "after" ? batch.id : nil }, for: Self.viewer)).contains("No older batches."))

        let failure = Batch.Failure(code: "budget_exhausted", message: "The key's budget is spent.", line: 2)
        _ = try await parts.store.moveBatch(batch.id, to: .failed, from: [.inProgress], failure: failure, now: Date())
        let detail = try await Self.text(refusing.batchPage(id: batch.id, for: Self.viewer))
        #expect(detail.contains("<code>budget_exhausted</code>") && detail.contains("The key&#39;s budget is spent."))
        #expect(!detail.contains("/cancel\""), "no cancel for an ended batch")
        await #expect(throws: ConsoleRefusal.self) { try await refusing.batchPage(id: "batch_none", for: Self.viewer) }

        let refused = try await refusing.cancel(id: batch.id, ["confirmed": "1"], for: Self.viewer)
        #expect(refused.status == .seeOther && refused.headers[.location] == "/console/batches?notice=batch-ended")
        await #expect(throws: ConsoleRefusal.self) { try await refusing.cancel(id: "batch_none", ["confirmed": "1"], for: Self.viewer) }
        #expect(ConsoleNotice.batchEnded.isError && !ConsoleNotice.batchCancelling.isError)
    }

    @Test func usageIsShownAndDownloadedForARangeOfDays() async throws {
        let parts = Parts()
        let usage = UsagePages(access: parts.store)
        let range = { (name: String) -> String? in name == "since" ? "2027-01-01" : name == "until" ? "2027-01-03" : nil }
        let page = try await Self.text(usage.page(query: range, for: Self.viewer))
        #expect(
            page.contains("No requests in this range.")
                && page.contains("href=\"/console/usage.csv?since=2027-01-01&amp;until=2027-01-03\""))
        let csv = try await usage.csv(query: range)
        #expect(csv.headers[.contentDisposition] == "attachment; filename=\"mizan-usage-2027-01-01-to-2027-01-03.csv\"")
        #expect(try await Self.text(csv) == "day,key_id,key_name,model,requests,prompt_tokens,completion_tokens\r\n")
        #expect(throws: ConsoleRefusal.self) { try UsagePages.usageRange { $0 == "since" ? "2027-02-01" : "2027-01-01" } }
        #expect(UsagePages.csvField("=SUM(A1)") == "'=SUM(A1)" && UsagePages.csvField("a,b") == "\"a,b\"")
    }

    @Test func signingInTakesTheFormsChallengeAndTheAdminToken() async throws {
        let parts = Parts()
        let sessions = ConsoleSessions(adminTokenHash: try #require(parts.credentials.adminTokenHash), lifetime: 3600)
        let signIn = SignInPages(
            sessions: sessions, credentials: parts.credentials, access: parts.store, limiter: SignInLimiter(), logger: .init(label: "tests")
        )
        let form = signIn.form(Self.request(.get, "/console/sign-in"))
        let challenge = try #require(form.headers[.setCookie]).split(separator: ";")[0].split(separator: "=")[1]
        let token = try #require(ConsoleClient.Answer.value(of: "csrf", in: try await Self.text(form)))
        var headers = HTTPFields()
        headers[.cookie] = "\(ConsoleSessions.signInCookieName)=\(challenge)"

        let wrong = try await signIn.signIn(
            Self.request(.post, "/console/sign-in", headers: headers, form: "csrf=\(token)&token=wrong"), address: "192.0.2.1")
        #expect(wrong.status == .unauthorized)
        #expect(try await Self.text(wrong).contains("That is not the admin token."))

        let right = try await signIn.signIn(
            Self.request(.post, "/console/sign-in", headers: headers, form: "csrf=\(token)&token=admin-token-of-the-tests"),
            address: "192.0.2.1")
        #expect(right.status == .seeOther && right.headers[.location] == "/console")
        let cookie = try #require(right.headers[values: .setCookie].first { $0.hasPrefix(ConsoleSessions.cookieName + "=") })
        let value = String(cookie.split(separator: ";")[0].dropFirst(ConsoleSessions.cookieName.count + 1))
        #expect(sessions.session(fromCookie: value) != nil)
    }

    @Test func theHTTPPlumbingReadsFormsAndRefusesOtherSites() async throws {
        #expect(ConsoleHTTP.parseForm("a=1&b=two+words&a=2&c=%C3%A9") == ["a": "1", "b": "two words", "c": "é"])
        var forwarded = HTTPFields()
        forwarded[.init("X-Forwarded-Proto")!] = "https"
        let secure = Self.request(.get, "/console", headers: forwarded)
        #expect(ConsoleHTTP.cookie("c", "v", maxAge: 10, secure) == "c=v; Path=/console; Max-Age=10; HttpOnly; SameSite=Strict; Secure")
        #expect(ConsoleHTTP.origin(secure) == "https://127.0.0.1:8080")

        var elsewhere = HTTPFields()
        elsewhere[.origin] = "https://evil.example"
        #expect(throws: ConsoleRefusal.self) { try ConsoleHTTP.checkOrigin(Self.request(.post, "/console/keys", headers: elsewhere)) }
        #expect(try await ConsoleHTTP.form(Self.request(.post, "/console/keys", form: "name=x")) == ["name": "x"])

        let secured = ConsoleHTTP.secured(ConsoleHTTP.redirect(to: "/console"))
        #expect(secured.headers[.contentSecurityPolicy] == ConsoleHTTP.contentSecurityPolicy)
        #expect(secured.headers[.cacheControl] == "no-store" && secured.headers[.location] == "/console")
    }

    @Test func aNoticeIsOnlyOneOfTheFixedTexts() {
        #expect(ConsoleNotice(query: "key-saved")?.text == "The key's settings were saved.")
        #expect(ConsoleNotice(query: "anything else") == nil && ConsoleNotice(query: nil) == nil)
        #expect(ConsoleNotice.nodeRevoked.on("/console/nodes") == "/console/nodes?notice=node-revoked")
    }
}
