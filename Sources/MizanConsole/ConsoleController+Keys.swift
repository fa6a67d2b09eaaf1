import Foundation
import Hummingbird
import MizanCore
import MizanGateway

/// The keys page: create (the key shown once, with a copy button), list with each key's
/// settings and consumption, change a key's settings, revoke (after a confirmation).
extension ConsoleController {
    func keysPage(
        _ session: ConsoleSessions.Session, created: (name: String, secret: String)? = nil, error: String? = nil, notice: String? = nil,
        form: [String: String] = [:]
    ) async throws -> Response {
        let keys = try await access.apiKeys()
        let now = Date()
        let csrf = sessions.csrfToken(for: session)
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
                  <td data-label="Name"><a href="/console/keys/\(Self.query(key.id))"><strong>\(key.name)</strong></a><br><span class="muted mono">\(key.prefix)…</span></td>
                  <td data-label="Models">\(key.policy.models.map { $0.isEmpty ? "none" : $0.joined(separator: ", ") } ?? "all")</td>
                  <td data-label="Limits">\(Self.limitsText(key.policy.limits))</td>
                  <td data-label="Budget">\(Self.budgetText(key.policy.budget))</td>
                  <td data-label="Now">\(Self.consumptionText(view.consumption, policy: key.policy))</td>
                  <td data-label="Expires">\(expired ? ConsoleLayout.badge("expired", kind: "bad") : key.policy.expiresAt.map { ConsoleLayout.time($0) } ?? "never")</td>
                  <td data-label="Created">\(ConsoleLayout.time(key.createdAt))</td>
                  <td data-label="Actions"><div class="row-actions">
                    <a href="/console/keys/\(Self.query(key.id))">Edit</a>
                    <form method="post" action="/console/keys/\(Self.query(key.id))/revoke" class="inline" data-confirm="Revoke the key “\(key.name)”? Every client using it is refused from now on.">
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
            <th scope="col">Now</th><th scope="col">Expires</th><th scope="col">Created</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
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
                \(Self.keyFields(form, nameRequired: true))
                <div class="form-actions"><button type="submit" class="primary">Create key</button></div>
              </form>
            </section>
            """
        return layout("Keys", .keys, session, body)
    }

    func keyPage(
        _ context: GatewayRequestContext, _ session: ConsoleSessions.Session, error: String? = nil, notice: String? = nil,
        form: [String: String]? = nil
    )
        async throws -> Response
    {
        let key = try await activeKey(context)
        let counters = key.policy.isCounted ? try await access.keyCounters(key.id) : nil
        let view = AdminWire.KeyView.of(key, counters: counters, now: Date())
        let csrf = sessions.csrfToken(for: session)
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
                <dt>Now</dt><dd>\(Self.consumptionText(view.consumption, policy: key.policy))</dd>
              </dl>
            </section>
            <section class="panel" aria-labelledby="edit-key">
              <h2 id="edit-key">Settings</h2>
              <p class="hint">An empty field removes its setting. Changes take effect on this gateway at once and on other instances within their key cache.</p>
              <form method="post" action="/console/keys/\(Self.query(key.id))">
                \(ConsoleLayout.csrfField(csrf))
                \(Self.keyFields(form ?? Self.fields(of: key), nameRequired: true))
                <div class="form-actions"><button type="submit" class="primary">Save</button></div>
              </form>
            </section>
            <section class="panel" aria-labelledby="revoke-key">
              <h2 id="revoke-key">Revoke</h2>
              <form method="post" action="/console/keys/\(Self.query(key.id))/revoke" data-confirm="Revoke the key “\(key.name)”? Every client using it is refused from now on.">
                \(ConsoleLayout.csrfField(csrf))<button type="submit" class="danger">Revoke this key</button>
              </form>
            </section>
            """
        return layout("Key \(key.name)", .keys, session, body)
    }

    func createKey(_ request: Request, _ session: ConsoleSessions.Session) async throws -> Response {
        let form = try await checkedForm(request, session)
        do {
            let policy = try Self.policy(from: form)
            let issued = try await credentials.issueKey(name: form["name"] ?? "", policy: policy)
            var response = try await keysPage(session, created: (issued.key.name, issued.secret))
            response.status = .created
            return response
        } catch let error as MizanError where error.httpStatus == 400 {
            var response = try await keysPage(session, error: error.message, form: form)
            response.status = .badRequest
            return response
        }
    }

    func updateKey(_ request: Request, _ context: GatewayRequestContext, _ session: ConsoleSessions.Session) async throws -> Response {
        let form = try await checkedForm(request, session)
        let key = try await activeKey(context)
        do {
            let policy = try Self.policy(from: form)
            var patch = KeyPolicyPatch()
            patch.name = .set(form["name"] ?? "")
            patch.models = policy.models.map { .set($0) } ?? .remove
            patch.limits = policy.limits.map { .set($0) } ?? .remove
            patch.budget = policy.budget.map { .set($0) } ?? .remove
            patch.expiresAt = policy.expiresAt.map { .set($0) } ?? .remove
            _ = try await credentials.updateKey(key.id, patch)
            return Self.redirect(to: "/console/keys/\(Self.query(key.id))?notice=key-saved")
        } catch let error as MizanError where error.httpStatus == 400 {
            var response = try await keyPage(context, session, error: error.message, form: form)
            response.status = .badRequest
            return response
        }
    }

    func revokeKey(_ request: Request, _ context: GatewayRequestContext, _ session: ConsoleSessions.Session) async throws -> Response {
        let form = try await checkedForm(request, session)
        let key = try await activeKey(context)
        guard form["confirmed"] == "1" else {
            return confirmation(
                session, title: "Revoke key", question: "Revoke the key “\(key.name)”? Every client using it is refused from now on.",
                action: "/console/keys/\(Self.query(key.id))/revoke", button: "Revoke key", back: "/console/keys/\(Self.query(key.id))",
                section: .keys)
        }
        _ = try await credentials.revokeKey(key.id)
        return Self.redirect(to: "/console/keys?notice=key-revoked")
    }

    /// The active key of a `/keys/{id}` path.
    func activeKey(_ context: GatewayRequestContext) async throws -> APIKey {
        guard let id = context.parameters.get("id"), !id.isEmpty,
            let key = try await access.apiKeys().first(where: { $0.id == id && $0.isActive })
        else { throw ConsoleRefusal(status: .notFound, message: "No such key (a revoked key is gone).") }
        return key
    }

    // MARK: - The key form

    /// The fields of the create and edit forms, filled from `form`.
    static func keyFields(_ form: [String: String], nameRequired: Bool) -> HTML {
        let value = { (name: String) in form[name] ?? "" }
        let period = value("budgetPeriod").isEmpty ? "month" : value("budgetPeriod")
        let periods = KeyPolicy.Budget.Period.allCases.map { option -> HTML in
            "<option value=\"\(option.rawValue)\"\(option.rawValue == period ? " selected" as HTML : .empty)>\(option.rawValue)</option>"
        }
        return """
            <div class="form-grid">
              <div class="field"><label for="key-name">Name</label><input id="key-name" name="name" value="\(value("name"))" maxlength="200"\(nameRequired ? " required" as HTML : .empty) placeholder="team-a"></div>
              <div class="field"><label for="key-models">Models (comma-separated; empty: all)</label><input id="key-models" name="models" value="\(value("models"))" placeholder="gpt-4o-mini, llama3"></div>
              <div class="field"><label for="key-rpm">Requests per minute</label><input id="key-rpm" name="rpm" type="number" min="1" value="\(value("rpm"))"></div>
              <div class="field"><label for="key-tpm">Tokens per minute</label><input id="key-tpm" name="tpm" type="number" min="1" value="\(value("tpm"))"></div>
              <div class="field"><label for="key-concurrency">Requests at once</label><input id="key-concurrency" name="concurrency" type="number" min="1" value="\(value("concurrency"))"></div>
              <div class="field"><label for="key-budget">Token budget</label><input id="key-budget" name="budgetTokens" type="number" min="1" value="\(value("budgetTokens"))"></div>
              <div class="field"><label for="key-period">Budget period (UTC)</label><select id="key-period" name="budgetPeriod">\(periods)</select></div>
              <div class="field"><label for="key-expires">Expires on (UTC date)</label><input id="key-expires" name="expires" type="date" value="\(value("expires"))"></div>
            </div>
            """
    }

    /// A key's settings as form values.
    static func fields(of key: APIKey) -> [String: String] {
        var form = ["name": key.name]
        if let models = key.policy.models { form["models"] = models.joined(separator: ", ") }
        if let value = key.policy.limits?.requestsPerMinute { form["rpm"] = String(value) }
        if let value = key.policy.limits?.tokensPerMinute { form["tpm"] = String(value) }
        if let value = key.policy.limits?.concurrentRequests { form["concurrency"] = String(value) }
        if let budget = key.policy.budget {
            form["budgetTokens"] = String(budget.tokens)
            form["budgetPeriod"] = budget.period.rawValue
        }
        if let expires = key.policy.expiresAt { form["expires"] = String(ISO8601Text.text(expires).prefix(10)) }
        return form
    }

    /// The policy a form describes (empty fields: no setting).
    /// - Throws: `MizanError` `badRequest` naming the field.
    static func policy(from form: [String: String]) throws -> KeyPolicy {
        func number(_ name: String, _ label: String) throws -> Int? {
            let raw = (form[name] ?? "").trimmingCharacters(in: .whitespaces)
            guard !raw.isEmpty else { return nil }
            guard let value = Int(raw), value >= 1, value <= KeyPolicy.maxLimit else {
                throw MizanError(.badRequest, "\(label) must be a whole number from 1 to \(KeyPolicy.maxLimit).")
            }
            return value
        }
        var policy = KeyPolicy()
        let models = (form["models"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if !models.isEmpty { policy.models = models }
        let limits = KeyPolicy.Limits(
            requestsPerMinute: try number("rpm", "Requests per minute"), tokensPerMinute: try number("tpm", "Tokens per minute"),
            concurrentRequests: try number("concurrency", "Requests at once"))
        if !limits.isEmpty { policy.limits = limits }
        if let tokens = try number("budgetTokens", "The token budget") {
            guard let period = KeyPolicy.Budget.Period(rawValue: form["budgetPeriod"] ?? "") else {
                throw MizanError(.badRequest, "The budget period must be day, month or total.")
            }
            policy.budget = KeyPolicy.Budget(tokens: tokens, period: period)
        }
        let expires = (form["expires"] ?? "").trimmingCharacters(in: .whitespaces)
        if !expires.isEmpty {
            guard let date = ISO8601Text.date(from: expires, allowingDate: true) else {
                throw MizanError(.badRequest, "The expiry must be a date (2027-01-01).")
            }
            policy.expiresAt = date
        }
        try policy.validate()
        return policy
    }

    static func limitsText(_ limits: KeyPolicy.Limits?) -> String {
        guard let limits, !limits.isEmpty else { return "none" }
        var parts: [String] = []
        if let value = limits.requestsPerMinute { parts.append("\(ConsoleLayout.number(value)) requests/min") }
        if let value = limits.tokensPerMinute { parts.append("\(ConsoleLayout.number(value)) tokens/min") }
        if let value = limits.concurrentRequests { parts.append("\(value) at once") }
        return parts.joined(separator: " · ")
    }

    static func budgetText(_ budget: KeyPolicy.Budget?) -> String {
        guard let budget else { return "none" }
        let per = budget.period == .total ? "in total" : "a \(budget.period.rawValue)"
        return "\(ConsoleLayout.number(budget.tokens)) tokens \(per)"
    }

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
