import Foundation
import Hummingbird
import MizanCore
import MizanGateway
import MizanStore

/// The batches pages: every key's batches of the Batch API, newest first, a page at a time,
/// with their progress and where their lines ran; one batch's every field and errors; and a
/// cancel (after a confirmation) for a batch not yet ended. Never a line's request or answer.
struct BatchesPages: Sendable {
    /// The batches.
    let batches: any BatchStore
    /// The keys, whose names the pages show.
    let access: any AccessStore
    /// Cancels a batch as the Batch API does.
    let cancelBatch: @Sendable (String) async throws -> Batch

    /// Rows on a page of batches.
    static let pageSize = 50

    /// A page of batches of every key, newest first, older than the query's `after`.
    /// - Parameters:
    ///   - query: The value of each of the page's query parameters.
    ///   - viewer: Who it is for.
    ///   - notice: A notice shown at the top.
    func page(query: (String) -> String?, for viewer: ConsoleViewer, notice: ConsoleNotice? = nil) async throws -> Response {
        let after = query("after").flatMap { $0.isEmpty ? nil : $0 }
        // One more than a page tells whether an older page exists.
        let found = try await batches.batches(apiKeyID: nil, after: after, limit: Self.pageSize + 1)
        let shown = Array(found.prefix(Self.pageSize))
        let names = try await keyNames()
        let csrf = viewer.csrf
        let rows = shown.map { batch -> HTML in
            let path = "/console/batches/\(ConsoleHTTP.query(batch.id))"
            let action: HTML =
                batch.status.isTerminal || batch.status == .cancelling
                ? "<span class=\"muted\">—</span>"
                : """
                <form method="post" action="\(path)/cancel" class="inline" data-confirm="Cancel the batch \(batch.id)? Its running lines finish; the rest do not start.">
                  \(ConsoleLayout.csrfField(csrf))<button type="submit" class="danger">Cancel</button>
                </form>
                """
            return """
                <tr>
                  <td data-label="Batch"><a class="mono" href="\(path)">\(batch.id)</a></td>
                  <td data-label="Key">\(Self.keyText(batch.apiKeyID, names: names))</td>
                  <td data-label="Status">\(Self.statusBadge(batch.status))</td>
                  <td data-label="Progress">\(Self.progress(batch.counts))</td>
                  <td class="num" data-label="Completed">\(ConsoleLayout.number(batch.counts.completed))</td>
                  <td class="num" data-label="Failed">\(ConsoleLayout.number(batch.counts.failed))</td>
                  <td data-label="Ran on">\(Self.placesText(batch.counts))</td>
                  <td data-label="Created">\(ConsoleLayout.time(batch.createdAt))</td>
                  <td data-label="Actions">\(action)</td>
                </tr>
                """
        }
        let table: HTML =
            rows.isEmpty
            ? "<p class=\"empty\">\(after != nil ? "No older batches." : "No batches yet — a client creates one with POST /v1/batches from an uploaded file.")</p>"
            : """
            <table class="responsive"><thead><tr><th scope="col">Batch</th><th scope="col">Key</th><th scope="col">Status</th>
            <th scope="col">Progress</th><th scope="col" class="num">Completed</th><th scope="col" class="num">Failed</th>
            <th scope="col">Ran on</th><th scope="col">Created</th><th scope="col"><span class="muted">Actions</span></th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """
        var pager: [HTML] = []
        if after != nil { pager.append("<a href=\"/console/batches\">← Newest</a>") }
        if found.count > Self.pageSize, let last = shown.last {
            pager.append("<a href=\"/console/batches?after=\(ConsoleHTTP.query(last.id))\" rel=\"next\">Older →</a>")
        }
        let body: HTML = """
            <h1>Batches</h1>
            \(notice.map { ConsoleLayout.notice($0.text, error: $0.isError) } ?? .empty)
            <p class="hint">Batches of the Batch API of every key, newest first. Their lines run on agent nodes below every interactive request; lines still waiting near the end of a batch's window go to provider routes. Their requests and answers are never shown here.</p>
            <div id="batches-live" data-live="5" class="table-wrap">\(table)</div>
            <nav class="pager" aria-label="Pages">\(pager)</nav>
            """
        return viewer.page("Batches", .batches, body)
    }

    /// One batch's page: every field, its errors and a cancel while it runs.
    /// - Parameters:
    ///   - raw: The batch's id from the path.
    ///   - viewer: Who it is for.
    ///   - notice: A notice shown at the top.
    /// - Throws: ``ConsoleRefusal`` 404 when there is no such batch.
    func batchPage(id raw: String?, for viewer: ConsoleViewer, notice: ConsoleNotice? = nil) async throws -> Response {
        guard let raw, !raw.isEmpty, let batch = try await batches.batch(raw, apiKeyID: nil) else {
            throw ConsoleRefusal(status: .notFound, message: "No such batch.")
        }
        let names = try await keyNames()
        let path = "/console/batches/\(ConsoleHTTP.query(batch.id))"
        let counts = batch.counts
        let metadata: HTML =
            (batch.metadata ?? [:]).isEmpty
            ? "<span class=\"muted\">—</span>"
            : "<dl class=\"facts\">\((batch.metadata ?? [:]).sorted { $0.key < $1.key }.map { pair -> HTML in "<dt>\(pair.key)</dt><dd>\(pair.value)</dd>" })</dl>"
        let file = { (id: String?) -> HTML in id.map { "<span class=\"mono\">\($0)</span>" } ?? "<span class=\"muted\">—</span>" }
        let times: [(String, Date?)] = [
            ("Created", batch.createdAt), ("In progress", batch.inProgressAt), ("Finalizing", batch.finalizingAt),
            ("Completed", batch.completedAt), ("Failed", batch.failedAt), ("Expired", batch.expiredAt),
            ("Cancelling", batch.cancellingAt), ("Cancelled", batch.cancelledAt), ("Window closes", batch.expiresAt),
        ]
        let timeRows = times.map { name, date -> HTML in "<dt>\(name)</dt><dd>\(ConsoleLayout.time(date))</dd>" }
        let errors: HTML =
            batch.failures.isEmpty
            ? "<p class=\"empty\">No errors.</p>"
            : """
            <table class="responsive"><thead><tr><th scope="col">Code</th><th scope="col">Message</th><th scope="col" class="num">Line</th></tr></thead>
            <tbody>\(batch.failures.map { failure -> HTML in
                """
                <tr><td data-label="Code"><code>\(failure.code)</code></td><td data-label="Message">\(failure.message)</td>\
                <td class="num" data-label="Line">\(failure.line.map { ConsoleLayout.number($0) } ?? "—")</td></tr>
                """
            })</tbody></table>
            """
        let cancel: HTML =
            batch.status.isTerminal || batch.status == .cancelling
            ? .empty
            : """
            <form method="post" action="\(path)/cancel" class="form-actions" data-confirm="Cancel the batch \(batch.id)? Its running lines finish; the rest do not start.">
              \(ConsoleLayout.csrfField(viewer.csrf))<input type="hidden" name="from" value="batch">
              <button type="submit" class="danger">Cancel batch</button>
            </form>
            """
        let body: HTML = """
            <p><a href="/console/batches">← All batches</a></p>
            <h1>Batch <span class="mono">\(batch.id)</span></h1>
            \(notice.map { ConsoleLayout.notice($0.text, error: $0.isError) } ?? .empty)
            \(cancel)
            <div class="charts">
              <section class="panel" aria-labelledby="batch-facts">
                <h2 id="batch-facts">Facts</h2>
                <dl class="facts">
                  <dt>Status</dt><dd>\(Self.statusBadge(batch.status))</dd>
                  <dt>Key</dt><dd>\(Self.keyText(batch.apiKeyID, names: names)) <span class="muted mono">\(batch.apiKeyID)</span></dd>
                  <dt>Endpoint</dt><dd>/v1\(batch.endpoint.path)</dd>
                  <dt>Class</dt><dd>\(batch.priority.rawValue)</dd>
                  <dt>Window</dt><dd>\(Self.windowText(batch.windowSeconds))</dd>
                  <dt>Input file</dt><dd>\(file(batch.inputFileID))</dd>
                  <dt>Output file</dt><dd>\(file(batch.outputFileID))</dd>
                  <dt>Error file</dt><dd>\(file(batch.errorFileID))</dd>
                  <dt>Metadata</dt><dd>\(metadata)</dd>
                </dl>
              </section>
              <section class="panel" aria-labelledby="batch-lines">
                <h2 id="batch-lines">Lines</h2>
                <dl class="facts">
                  <dt>Progress</dt><dd>\(Self.progress(counts))</dd>
                  <dt>Total</dt><dd>\(ConsoleLayout.number(counts.total))</dd>
                  <dt>Completed</dt><dd>\(ConsoleLayout.number(counts.completed))</dd>
                  <dt>Failed</dt><dd>\(ConsoleLayout.number(counts.failed))</dd>
                  <dt>Not ended</dt><dd>\(ConsoleLayout.number(counts.pending))</dd>
                  <dt>Ran on</dt><dd>\(Self.placesText(counts))</dd>
                </dl>
              </section>
              <section class="panel" aria-labelledby="batch-times">
                <h2 id="batch-times">Times</h2>
                <dl class="facts">\(timeRows)</dl>
              </section>
            </div>
            <section class="panel" aria-labelledby="batch-errors">
              <h2 id="batch-errors">Errors</h2>
              <div class="table-wrap">\(errors)</div>
            </section>
            """
        return viewer.page("Batch", .batches, body)
    }

    /// Cancels a batch once the form says it was confirmed (`confirmed=1`), then back to the
    /// page the form came from (`from=batch`: the batch's page; else the list) with a notice —
    /// an error notice when the batch had ended already. Unconfirmed, a page asks first.
    /// - Parameters:
    ///   - raw: The batch's id from the path.
    ///   - form: The checked form.
    ///   - viewer: Who it is for.
    /// - Throws: ``ConsoleRefusal`` 404 when there is no such batch.
    func cancel(id raw: String?, _ form: [String: String], for viewer: ConsoleViewer) async throws -> Response {
        guard let raw, !raw.isEmpty, try await batches.batch(raw, apiKeyID: nil) != nil else {
            throw ConsoleRefusal(status: .notFound, message: "No such batch.")
        }
        let back = form["from"] == "batch" ? "/console/batches/\(ConsoleHTTP.query(raw))" : "/console/batches"
        guard form["confirmed"] == "1" else {
            return viewer.confirmation(
                title: "Cancel batch", question: "Cancel the batch \(raw)? Its running lines finish; the rest do not start.",
                action: "/console/batches/\(ConsoleHTTP.query(raw))/cancel", button: "Cancel batch", back: back, section: .batches)
        }
        do {
            _ = try await cancelBatch(raw)
        } catch let error as MizanError where error.code == .conflict {
            return ConsoleHTTP.redirect(to: ConsoleNotice.batchEnded.on(back))
        } catch let error as MizanError where error.code == .notFound {
            throw ConsoleRefusal(status: .notFound, message: "No such batch.")
        }
        return ConsoleHTTP.redirect(to: ConsoleNotice.batchCancelling.on(back))
    }

    // MARK: - Pieces

    /// Every key's name by id (revoked keys too: their batches stay listed).
    func keyNames() async throws -> [String: String] {
        Dictionary(try await access.apiKeys().map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
    }

    /// A key's name, or the end of its id when the key is gone.
    static func keyText(_ id: String, names: [String: String]) -> HTML {
        if let name = names[id] { return "\(name)" }
        return "<span class=\"muted mono\">\(String(id.suffix(12)))</span>"
    }

    /// `completed+failed / total` with a bar.
    static func progress(_ counts: Batch.Counts) -> HTML {
        let ended = counts.completed + counts.failed
        let label = "\(ConsoleLayout.number(ended)) / \(ConsoleLayout.number(counts.total))"
        return """
            <span class="progress"><progress max="\(max(1, counts.total))" value="\(min(ended, max(1, counts.total)))" aria-label="\(label) lines ended"></progress> \
            <span class="nowrap">\(label)</span></span>
            """
    }

    /// Where a batch's lines ran: `3 nodes · 1 routes` (lines served by each).
    static func placesText(_ counts: Batch.Counts) -> String {
        "\(ConsoleLayout.number(counts.byNodes)) nodes · \(ConsoleLayout.number(counts.byRoutes)) routes"
    }

    /// A window in words: `24 h`, or seconds when it is not whole hours (`86 s`).
    static func windowText(_ seconds: Int) -> String {
        seconds > 0 && seconds % 3600 == 0 ? "\(seconds / 3600) h" : "\(ConsoleLayout.number(seconds)) s"
    }

    /// A batch's status as a coloured badge.
    static func statusBadge(_ status: Batch.Status) -> HTML {
        let kind =
            switch status {
            case .completed: "ok"
            case .failed, .expired: "bad"
            case .cancelling, .cancelled: "muted"
            case .validating, .finalizing: "warn"
            case .inProgress: "info"
            }
        return ConsoleLayout.badge(status.rawValue.replacingOccurrences(of: "_", with: " "), kind: kind)
    }
}
