import Foundation
import Hummingbird
import MizanCore
import MizanGateway
import MizanStore

/// The keys pages: create (the key shown once, with a copy button), list with each key's
/// settings and consumption, change a key's settings, revoke (after a confirmation).
struct KeysPages: Sendable {
    /// Issues, changes and revokes keys.
    let credentials: Credentials
    /// The keys and their counters.
    let access: any AccessStore

    /// A key just issued, shown once.
    struct Created {
        /// The key's name.
        var name: String
        /// The whole key.
        var secret: String
    }

    /// The list of keys, with the form that creates one.
    /// - Parameters:
    ///   - viewer: Who it is for.
    ///   - created: A key just issued, which the page shows once.
    ///   - error: A refusal shown at the top.
    ///   - notice: A notice shown at the top.
    ///   - form: What the create form is filled with.
    func page(
        for viewer: ConsoleViewer, created: Created? = nil, error: String? = nil, notice: String? = nil, form: [String: String] = [:]
    ) async throws -> Response {
        let keys = try await access.apiKeys()
        let now = Date()
        let csrf = viewer.csrf
        var top: HTML = .empty
        if let created {
            top = """
                <section class="secret" aria-labelledby="new-key">
                  <h2 id="new-key">Key “\(created.name)” created</h2>
                  <p>This is the only time the key is shown: copy it now and hand it over safely. Mizan keeps only its hash.</p>
                  <label for="new-key-secret">API key</label>
                  <div class="copy-row"><input id="new-key-secret" readonly value="\(created.secret)"><button type="button" data-copy="#new-key-secret">Copy</button></div>
                  <p class="hint">Clients send it as <code>Authorization: Bearer …</code> (or <code>x-api-key</code> on <code>/v1/messages</code>).</p>
                </section>
                """
        }
        if let error { top = "\(top)\(ConsoleLayout.notice(error, error: true))" }
        if let notice { top = "\(top)\(ConsoleLayout.notice(notice))" }

        let active = keys.filter(\.isActive).sorted { $0.createdAt > $1.createdAt }
        var rows: [HTML] = []
        for key in active {
            let counters = key.policy.isCounted ? try await access.keyCounters(key.id) : nil
            let view = AdminWire.KeyView.of(key, counters: counters, now: now)
            let expired = key.policy.hasExpired(at: now)
            rows.append(
                """
                <tr>
                  <td data-label="Name"><a href="/console/keys/\(ConsoleHTTP.query(key.id))"><strong>\(key.name)</strong></a><br><span class="muted mono">\(key.prefix)…</span></td>
                  <td data-label="Models">\(key.policy.models.map { $0.isEmpty ? "none" : $0.joined(separator: ", ") } ?? "all")</td>
                  <td data-label="Limits">\(Self.limitsText(key.policy.limits))</td>
                  <td data-label="Budget">\(Self.budgetText(key.policy.budget))</td>
                  <td data-label="Queueing">\(Self.queueingText(key.policy))</td>
                  <td data-label="Now">\(Self.consumptionText(view.consumption, policy: key.policy))</td>
                  <td data-label="Expires">\(expired ? ConsoleLayout.badge("expired", kind: "bad") : key.policy.expiresAt.map { ConsoleLayout.time($0) } ?? "never")</td>
                  <td data-label="Created">\(ConsoleLayout.time(key.createdAt))</td>
                  <td data-label="Actions"><div class="row-actions">
                    <a href="/console/keys/\(ConsoleHTTP.query(key.id))">Edit</a>
                    <form method="post" action="/console/keys/\(ConsoleHTTP.query(key.id))/revoke" class="inline" data-confirm="Revoke the key “\(key.name)”? Every client using it is refused from now on.">
                      \(ConsoleLayout.csrfField(csrf))<button type="submit" class="danger">Revoke</button>
                    </form>
                  </div></td>
                </tr>
                """)
        }
        let table: HTML =
            rows.isEmpty
            ? "<p class=\"empty\">No keys yet — create one below for each person, team or service.</p>"
            : """
            <table class="responsive"><thead><tr><th scope="col">Name</th><th scope="col">Models</th><th scope="col">Limits</th><th scope="col">Budget</th>
            <th scope="col">Queueing</th><th scope="col">Now</th><th scope="col">Expires</th><th scope="col">Created</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """
        let revoked = keys.count - active.count
        let body: HTML = """
            <h1>Keys</h1>
            \(top)
            <div id="keys-live" class="table-wrap">\(table)</div>
            \(revoked > 0 ? "<p class=\"hint\">\(revoked) revoked key\(revoked == 1 ? " is" : "s are") not shown.</p>" as HTML : .empty)
            <section class="panel" aria-labelledby="create-key">
              <h2 id="create-key">Create a key</h2>
              <form method="post" action="/console/keys">
                \(ConsoleLayout.csrfField(csrf))
                \(KeyForm.fields(form, nameRequired: true))
                <div class="form-actions"><button type="submit" class="primary">Create key</button></div>
              </form>
            </section>
            """
        return viewer.page("Keys", .keys, body)
    }

    /// One active key's page: its facts, its settings' form and its revocation.
    /// - Parameters:
    ///   - id: The key's id from the path.
    ///   - viewer: Who it is for.
    ///   - error: A refusal shown at the top.
    ///   - notice: A notice shown at the top.
    ///   - form: What the settings' form is filled with (the key's settings when `nil`).
    /// - Throws: ``ConsoleRefusal`` 404 when no active key has the id.
    func keyPage(
        id: String?, for viewer: ConsoleViewer, error: String? = nil, notice: String? = nil, form: [String: String]? = nil
    ) async throws -> Response {
        let key = try await activeKey(id: id)
        let counters = key.policy.isCounted ? try await access.keyCounters(key.id) : nil
        let view = AdminWire.KeyView.of(key, counters: counters, now: Date())
        let csrf = viewer.csrf
        var top: HTML = .empty
        if let error { top = ConsoleLayout.notice(error, error: true) }
        if let notice { top = "\(top)\(ConsoleLayout.notice(notice))" }
        let body: HTML = """
            <p><a href="/console/keys">← All keys</a></p>
            <h1>Key “\(key.name)”</h1>
            \(top)
            <section class="panel">
              <dl class="facts">
                <dt>Id</dt><dd class="mono">\(key.id)</dd>
                <dt>Key</dt><dd class="mono">\(key.prefix)… (the whole key was shown once, at creation)</dd>
                <dt>Created</dt><dd>\(ConsoleLayout.time(key.createdAt))</dd>
                <dt>Queueing</dt><dd>\(Self.queueingText(key.policy))</dd>
                <dt>Now</dt><dd>\(Self.consumptionText(view.consumption, policy: key.policy))</dd>
              </dl>
            </section>
            <section class="panel" aria-labelledby="edit-key">
              <h2 id="edit-key">Settings</h2>
              <p class="hint">An empty field removes its setting. Changes take effect on this gateway at once and on other instances within their key cache.</p>
              <form method="post" action="/console/keys/\(ConsoleHTTP.query(key.id))">
                \(ConsoleLayout.csrfField(csrf))
                \(KeyForm.fields(form ?? KeyForm.values(of: key), nameRequired: true))
                <div class="form-actions"><button type="submit" class="primary">Save</button></div>
              </form>
            </section>
            <section class="panel" aria-labelledby="revoke-key">
              <h2 id="revoke-key">Revoke</h2>
              <form method="post" action="/console/keys/\(ConsoleHTTP.query(key.id))/revoke" data-confirm="Revoke the key “\(key.name)”? Every client using it is refused from now on.">
                \(ConsoleLayout.csrfField(csrf))<button type="submit" class="danger">Revoke this key</button>
              </form>
            </section>
            """
        return viewer.page("Key \(key.name)", .keys, body)
    }

    /// Issues a key from the form: 201 with the key shown once; or 400, the page naming the
    /// field that is wrong and keeping what was typed.
    /// - Parameters:
    ///   - form: The checked form.
    ///   - viewer: Who it is for.
    func create(_ form: [String: String], for viewer: ConsoleViewer) async throws -> Response {
        do {
            let policy = try KeyForm.policy(from: form)
            let issued = try await credentials.issueKey(name: form["name"] ?? "", policy: policy)
            var response = try await page(for: viewer, created: Created(name: issued.key.name, secret: issued.secret))
            response.status = .created
            return response
        } catch let error as MizanError where error.httpStatus == 400 {
            var response = try await page(for: viewer, error: error.message, form: form)
            response.status = .badRequest
            return response
        }
    }

    /// Changes a key's settings to the form's (an empty field removes its setting), then back to
    /// its page with a notice; or 400, the page naming the field that is wrong.
    /// - Parameters:
    ///   - id: The key's id from the path.
    ///   - form: The checked form.
    ///   - viewer: Who it is for.
    func update(id: String?, _ form: [String: String], for viewer: ConsoleViewer) async throws -> Response {
        let key = try await activeKey(id: id)
        do {
            let policy = try KeyForm.policy(from: form)
            var patch = KeyPolicyPatch()
            patch.name = .set(form["name"] ?? "")
            patch.models = policy.models.map { .set($0) } ?? .remove
            patch.limits = policy.limits.map { .set($0) } ?? .remove
            patch.budget = policy.budget.map { .set($0) } ?? .remove
            patch.expiresAt = policy.expiresAt.map { .set($0) } ?? .remove
            patch.priority = policy.priority.map { .set($0) } ?? .remove
            patch.weight = policy.weight.map { .set($0) } ?? .remove
            patch.maxQueued = policy.maxQueued.map { .set($0) } ?? .remove
            _ = try await credentials.updateKey(key.id, patch)
            return ConsoleHTTP.redirect(to: ConsoleNotice.keySaved.on("/console/keys/\(ConsoleHTTP.query(key.id))"))
        } catch let error as MizanError where error.httpStatus == 400 {
            var response = try await keyPage(id: id, for: viewer, error: error.message, form: form)
            response.status = .badRequest
            return response
        }
    }

    /// Revokes a key once the form says it was confirmed (`confirmed=1`), then back to the list
    /// with a notice; unconfirmed, a page asks first.
    /// - Parameters:
    ///   - id: The key's id from the path.
    ///   - form: The checked form.
    ///   - viewer: Who it is for.
    func revoke(id: String?, _ form: [String: String], for viewer: ConsoleViewer) async throws -> Response {
        let key = try await activeKey(id: id)
        guard form["confirmed"] == "1" else {
            return viewer.confirmation(
                title: "Revoke key", question: "Revoke the key “\(key.name)”? Every client using it is refused from now on.",
                action: "/console/keys/\(ConsoleHTTP.query(key.id))/revoke", button: "Revoke key",
                back: "/console/keys/\(ConsoleHTTP.query(key.id))",
                section: .keys)
        }
        _ = try await credentials.revokeKey(key.id)
        return ConsoleHTTP.redirect(to: ConsoleNotice.keyRevoked.on("/console/keys"))
    }

    /// The active key of a `/keys/{id}` path.
    /// - Throws: ``ConsoleRefusal`` 404 when there is none (a revoked key is gone).
    func activeKey(id: String?) async throws -> APIKey {
        guard let id, !id.isEmpty,
            let key = try await access.apiKeys().first(where: { $0.id == id && $0.isActive })
        else { throw ConsoleRefusal(status: .notFound, message: "No such key (a revoked key is gone).") }
        return key
    }

    /// A key's rate limits in words: `60 requests/min · 2 at once`, or `none`.
    static func limitsText(_ limits: KeyPolicy.Limits?) -> String {
        guard let limits, !limits.isEmpty else { return "none" }
        var parts: [String] = []
        if let value = limits.requestsPerMinute { parts.append("\(ConsoleLayout.number(value)) requests/min") }
        if let value = limits.tokensPerMinute { parts.append("\(ConsoleLayout.number(value)) tokens/min") }
        if let value = limits.concurrentRequests { parts.append("\(value) at once") }
        return parts.joined(separator: " · ")
    }

    /// A key's budget in words: `1,000 tokens a day`, or `none`.
    static func budgetText(_ budget: KeyPolicy.Budget?) -> String {
        guard let budget else { return "none" }
        let per = budget.period == .total ? "in total" : "a \(budget.period.rawValue)"
        return "\(ConsoleLayout.number(budget.tokens)) tokens \(per)"
    }

    /// How a key's requests queue for agent nodes, in words: `interactive · weight 4 · 100 waiting
    /// at most`, or `standard` for a key without settings.
    static func queueingText(_ policy: KeyPolicy) -> String {
        var parts = [policy.priorityClass.rawValue]
        if let weight = policy.weight { parts.append("weight \(weight)") }
        if let maxQueued = policy.maxQueued { parts.append("\(ConsoleLayout.number(maxQueued)) waiting at most") }
        return parts.joined(separator: " · ")
    }

    /// What a key has used of its limits and budget now, in words.
    static func consumptionText(_ consumption: AdminWire.KeyView.Consumption?, policy: KeyPolicy) -> String {
        guard let consumption else { return policy.isCounted ? "nothing yet" : "not counted" }
        var parts: [String] = []
        if let window = consumption.requests {
            parts.append("\(ConsoleLayout.number(window.remaining)) of \(ConsoleLayout.number(window.limit)) requests left")
        }
        if let window = consumption.tokens {
            parts.append("\(ConsoleLayout.number(window.remaining)) of \(ConsoleLayout.number(window.limit)) tokens/min left")
        }
        if let inFlight = consumption.inFlight { parts.append("\(inFlight) running") }
        if let used = consumption.budgetTokensUsed, let budget = policy.budget {
            parts.append("\(ConsoleLayout.number(used)) of \(ConsoleLayout.number(budget.tokens)) budget tokens used")
        }
        return parts.isEmpty ? "—" : parts.joined(separator: " · ")
    }
}
