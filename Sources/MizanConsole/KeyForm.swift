import Foundation
import MizanCore
import MizanGateway

/// The form that creates a key and changes its settings: its fields, a key's settings as its
/// values, and the policy its values describe.
enum KeyForm {
    /// The fields of the create and edit forms, filled from `form`.
    static func fields(_ form: [String: String], nameRequired: Bool) -> HTML {
        let value = { (name: String) in form[name] ?? "" }
        let period = value("budgetPeriod").isEmpty ? "month" : value("budgetPeriod")
        let periods = KeyPolicy.Budget.Period.allCases.map { option -> HTML in
            "<option value=\"\(option.rawValue)\"\(option.rawValue == period ? " selected" as HTML : .empty)>\(option.rawValue)</option>"
        }
        let priority = value("priority").isEmpty ? PriorityClass.standard.rawValue : value("priority")
        let priorities = PriorityClass.allCases.reversed().map { option -> HTML in
            "<option value=\"\(option.rawValue)\"\(option.rawValue == priority ? " selected" as HTML : .empty)>\(option.rawValue)</option>"
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
              <div class="field"><label for="key-priority">Priority (nodes serve the highest first)</label><select id="key-priority" name="priority">\(priorities)</select></div>
              <div class="field"><label for="key-weight">Weight in its priority (empty: 1)</label><input id="key-weight" name="weight" type="number" min="1" max="\(KeyPolicy.maxWeight)" value="\(value("weight"))"></div>
              <div class="field"><label for="key-max-queued">Most requests waiting for nodes (empty: no cap)</label><input id="key-max-queued" name="maxQueued" type="number" min="1" max="\(KeyPolicy.maxQueuedLimit)" value="\(value("maxQueued"))"></div>
            </div>
            <p class="hint">How a key's requests wait for agent nodes: nodes take the highest priority first (interactive, then standard, then batch); a request that waits past the gateway's --promote-after rises one priority, and a request may lower its own with the X-Mizan-Priority header. Within a priority, keys take turns by weight. For example, a team's developers on an interactive key are served before a nightly batch key with at most 5,000 waiting, and a support key of weight 2 gets two turns for every one of a weight-1 key. Whether a model goes to nodes or to cloud routes first (local-first, cloud-first, local-only, cloud-only) is set per model in the gateway's routes file.</p>
            """
    }

    /// A key's settings as form values.
    static func values(of key: APIKey) -> [String: String] {
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
        if let value = key.policy.priority { form["priority"] = value.rawValue }
        if let value = key.policy.weight { form["weight"] = String(value) }
        if let value = key.policy.maxQueued { form["maxQueued"] = String(value) }
        return form
    }

    /// The policy a form describes (empty fields: no setting; the standard priority: none).
    /// - Throws: `MizanError` `badRequest` naming the field.
    static func policy(from form: [String: String]) throws -> KeyPolicy {
        func number(_ name: String, _ label: String, upTo limit: Int = KeyPolicy.maxLimit) throws -> Int? {
            let raw = (form[name] ?? "").trimmingCharacters(in: .whitespaces)
            guard !raw.isEmpty else { return nil }
            guard let value = Int(raw), value >= 1, value <= limit else {
                throw MizanError(.badRequest, "\(label) must be a whole number from 1 to \(limit).")
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
        let priority = (form["priority"] ?? "").trimmingCharacters(in: .whitespaces)
        if !priority.isEmpty {
            guard let priority = PriorityClass(rawValue: priority) else {
                throw MizanError(.badRequest, "The priority must be \(PriorityClass.names).")
            }
            policy.priority = priority == .standard ? nil : priority
        }
        policy.weight = try number("weight", "The weight", upTo: KeyPolicy.maxWeight)
        policy.maxQueued = try number("maxQueued", "The most requests waiting", upTo: KeyPolicy.maxQueuedLimit)
        try policy.validate()
        return policy
    }
}
