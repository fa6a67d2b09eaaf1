import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanGateway

/// The nodes page: every node with its health and load, live; create (the registration token
/// shown once, with the agent's command) and revoke (after a confirmation).
struct NodesPages: Sendable {
    /// The engine: its nodes and their settings.
    let dispatcher: Dispatcher

    /// A node just created, shown once.
    struct Created {
        /// The node's name.
        var name: String
        /// Its one-use registration token.
        var token: String
        /// The agent's command line, with the token.
        var command: String
    }

    /// The nodes page.
    /// - Parameters:
    ///   - viewer: Who it is for.
    ///   - created: A node just created, whose token the page shows once.
    ///   - error: A refusal shown at the top.
    ///   - notice: A notice shown at the top.
    func page(for viewer: ConsoleViewer, created: Created? = nil, error: String? = nil, notice: String? = nil) async throws
        -> Response
    {
        let nodes = try await dispatcher.nodes()
        let now = Date()
        let csrf = viewer.csrf
        var top: HTML = .empty
        if let created {
            top = """
                <section class="secret" aria-labelledby="new-node">
                  <h2 id="new-node">Node “\(created.name)” created</h2>
                  <p>Its registration token is shown <strong>only this once</strong>. Run the agent next to the local server with it; it registers, keeps its own node token in the token file, and appears below.</p>
                  <label for="registration-token">Registration token</label>
                  <div class="copy-row"><input id="registration-token" readonly value="\(created.token)" aria-describedby="token-hint"><button type="button" data-copy="#registration-token">Copy</button></div>
                  <p class="hint" id="token-hint">One use; it expires when the agent registers.</p>
                  <label for="agent-command">The agent's command (point <code>--provider</code> at your local server; Ollama shown)</label>
                  <div class="copy-row"><textarea id="agent-command" class="command" readonly rows="3">\(created.command)</textarea><button type="button" data-copy="#agent-command">Copy</button></div>
                </section>
                """
        }
        if let error { top = "\(top)\(ConsoleLayout.notice(error, error: true))" }
        if let notice { top = "\(top)\(ConsoleLayout.notice(notice))" }

        let shown = nodes.filter { $0.status != .revoked }.sorted { $0.name.lowercased() < $1.name.lowercased() }
        let revokedCount = nodes.count - shown.count
        let rows = shown.map { node -> HTML in
            let state = dispatcher.condition(of: node, now: now)
            let models = node.models.isEmpty ? "—" : node.models.joined(separator: ", ")
            let version = node.labels[MizanVersion.labelName] ?? "—"
            return """
                <tr>
                  <td data-label="Name"><strong>\(node.name)</strong><br><span class="muted mono">\(node.id.description)</span></td>
                  <td data-label="Status">\(ConsoleLayout.badge(state.rawValue, kind: state.badgeKind))</td>
                  <td data-label="Models">\(models)</td>
                  <td class="num" data-label="Slots in use">\(node.inFlight) / \(node.maxConcurrency)</td>
                  <td data-label="Last heartbeat">\(ConsoleLayout.time(node.lastSeen, relative: true))</td>
                  <td data-label="Version">\(version)</td>
                  <td data-label="Actions">
                    <form method="post" action="/console/nodes/\(node.id.description)/revoke" class="inline" data-confirm="Revoke the node “\(node.name)”? Its agent stops at once and cannot come back with the same token.">
                      \(ConsoleLayout.csrfField(csrf))<button type="submit" class="danger">Revoke</button>
                    </form>
                  </td>
                </tr>
                """
        }
        let table: HTML =
            rows.isEmpty
            ? "<p class=\"empty\">No nodes yet — create one below, then run <code>mizan-agent</code> next to a local server.</p>"
            : """
            <table class="responsive"><thead><tr><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Models</th>
            <th scope="col" class="num">Slots in use</th><th scope="col">Last heartbeat</th><th scope="col">Version</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """
        let body: HTML = """
            <h1>Nodes</h1>
            \(top)
            <div id="nodes-live" data-live="3" class="table-wrap">\(table)</div>
            <p class="hint">A node is stale when it has not sent a heartbeat for \(Int(dispatcher.configuration.nodeStaleAfter.timeInterval)) seconds; its jobs go to other nodes. \(revokedCount > 0 ? "\(revokedCount) revoked node\(revokedCount == 1 ? " is" : "s are") not shown." : "")</p>
            <section class="panel" aria-labelledby="create-node">
              <h2 id="create-node">Create a node</h2>
              <form method="post" action="/console/nodes" class="stack">
                \(ConsoleLayout.csrfField(csrf))
                <label for="node-name">Name</label>
                <input id="node-name" name="name" required maxlength="200" placeholder="gpu-box-1">
                <p class="hint">A registration token is shown once; the agent exchanges it for its own node token.</p>
                <button type="submit" class="primary">Create node</button>
              </form>
            </section>
            """
        return viewer.page("Nodes", .nodes, body)
    }

    /// Creates a node from the form (`name`): 201 with its registration token and the agent's
    /// command; or 400, the page naming what is wrong with the name.
    /// - Parameters:
    ///   - form: The checked form.
    ///   - gatewayURL: The gateway's URL as the browser sees it, for the agent's command.
    ///   - viewer: Who it is for.
    func create(_ form: [String: String], gatewayURL: String, for viewer: ConsoleViewer) async throws -> Response {
        let name: String
        do {
            name = try Names.checked(form["name"] ?? "", of: "node")
        } catch let error as MizanError {
            var response = try await page(for: viewer, error: error.message)
            response.status = .badRequest
            return response
        }
        let enrollment = try await dispatcher.createNode(name: name)
        let slug = String(name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40))
        let command = """
            export MIZAN_REGISTRATION_TOKEN='\(enrollment.registrationToken)'
            mizan-agent --gateway \(gatewayURL) --token-file ~/.config/mizan/\(slug.isEmpty ? "node" : slug).token --provider http://127.0.0.1:11434/v1
            """
        var response = try await page(for: viewer, created: Created(name: name, token: enrollment.registrationToken, command: command))
        response.status = .created
        return response
    }

    /// Revokes a node once the form says it was confirmed (`confirmed=1`), then back to the list
    /// with a notice; unconfirmed, a page asks first.
    /// - Parameters:
    ///   - raw: The node's id from the path.
    ///   - form: The checked form.
    ///   - viewer: Who it is for.
    func revoke(id raw: String?, _ form: [String: String], for viewer: ConsoleViewer) async throws -> Response {
        guard let raw, let id = NodeID(raw) else {
            throw ConsoleRefusal(status: .notFound, message: "No such node.")
        }
        guard form["confirmed"] == "1" else {
            let node = try await dispatcher.nodes().first { $0.id == id }
            guard let node else { throw ConsoleRefusal(status: .notFound, message: "No such node.") }
            return viewer.confirmation(
                title: "Revoke node",
                question: "Revoke the node “\(node.name)”? Its agent stops at once and cannot come back with the same token.",
                action: "/console/nodes/\(id.description)/revoke", button: "Revoke node", back: "/console/nodes", section: .nodes)
        }
        _ = try await dispatcher.revokeNode(id)
        return ConsoleHTTP.redirect(to: ConsoleNotice.nodeRevoked.on("/console/nodes"))
    }
}
