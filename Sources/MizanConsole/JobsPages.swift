import Foundation
import Hummingbird
import MizanCore
import MizanDispatch
import MizanGateway
import MizanStore

/// The jobs pages: agent-served requests by state and model, newest first, a page at a time;
/// and one job's story — never its messages or its answer.
struct JobsPages: Sendable {
    /// The engine: its jobs and nodes.
    let dispatcher: Dispatcher
    /// The provider routes, whose models the filter suggests.
    let routes: RouteTable

    /// Rows on a page of jobs.
    static let pageSize = 50

    /// A page of jobs, filtered by the query's `state` and `model`, older than its `before`.
    /// - Parameters:
    ///   - query: The value of each of the page's query parameters.
    ///   - viewer: Who it is for.
    /// - Throws: ``ConsoleRefusal`` 400 for a filter the admin API would refuse.
    func page(query: (String) -> String?, for viewer: ConsoleViewer) async throws -> Response {
        let (filter, _) = try Self.jobFilter(query)
        // One more than a page tells whether an older page exists.
        let found = try await dispatcher.jobs(matching: filter, limit: Self.pageSize + 1)
        let jobs = Array(found.prefix(Self.pageSize))
        let nodes = try await dispatcher.recentNodes()
        let nodeNames = Dictionary(nodes.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        let models = Set(routes.models + nodes.flatMap(\.models)).sorted()

        let stateOptions =
            ([HTML("<option value=\"\">any state</option>")]
                + JobState.allCases.map { state -> HTML in
                    "<option value=\"\(state.rawValue)\"\(filter.state == state ? " selected" as HTML : .empty)>\(Self.stateText(state))</option>"
                })
        let modelOptions = models.map { model -> HTML in "<option value=\"\(model)\"></option>" }
        let rows = jobs.map { job -> HTML in
            """
            <tr>
              <td data-label="Job"><a class="mono" href="/console/jobs/\(job.id.description)">\(String(job.id.description.suffix(12)))</a></td>
              <td data-label="State">\(Self.stateBadge(job.state))</td>
              <td data-label="Model">\(job.model)</td>
              <td data-label="Endpoint">\(job.endpoint.rawValue)\(job.stream ? " · stream" : "")</td>
              <td data-label="Node">\(job.nodeID.map { nodeNames[$0] ?? String($0.description.suffix(12)) } ?? "—")</td>
              <td class="num" data-label="Attempts">\(job.attempt)</td>
              <td data-label="Accepted">\(ConsoleLayout.time(job.createdAt))</td>
              <td class="num" data-label="Latency">\(ConsoleLayout.milliseconds(job.finishedAt.map { $0.timeIntervalSince(job.createdAt) * 1000 }))</td>
              <td class="num" data-label="Tokens">\(job.usage.map { ConsoleLayout.number($0.promptTokens + $0.completionTokens) } ?? "—")</td>
              <td data-label="Error">\(job.errorCode ?? "")</td>
            </tr>
            """
        }
        let filtered = filter.state != nil || filter.model != nil
        let table: HTML =
            rows.isEmpty
            ? "<p class=\"empty\">\(filter.before != nil ? "No older jobs." : filtered ? "No job matches these filters." : "No jobs yet — requests served by agent nodes appear here.")</p>"
            : """
            <table class="responsive"><thead><tr><th scope="col">Job</th><th scope="col">State</th><th scope="col">Model</th><th scope="col">Endpoint</th>
            <th scope="col">Node</th><th scope="col" class="num">Attempts</th><th scope="col">Accepted</th><th scope="col" class="num">Latency</th>
            <th scope="col" class="num">Tokens</th><th scope="col">Error</th></tr></thead>
            <tbody>\(rows)</tbody></table>
            """
        var base: [String] = []
        if let state = filter.state { base.append("state=\(state.rawValue)") }
        if let model = filter.model { base.append("model=\(ConsoleHTTP.query(model))") }
        var pager: [HTML] = []
        if filter.before != nil {
            pager.append("<a href=\"/console/jobs\(base.isEmpty ? "" : "?" + base.joined(separator: "&"))\">← Newest</a>")
        }
        if found.count > Self.pageSize, let last = jobs.last {
            let link = (base + ["before=\(last.id.description)"]).joined(separator: "&")
            pager.append("<a href=\"/console/jobs?\(link)\" rel=\"next\">Older →</a>")
        }
        let body: HTML = """
            <h1>Jobs</h1>
            <p class="hint">Requests served by agent nodes, newest first. Their messages and answers are never shown here.</p>
            <form method="get" action="/console/jobs" class="filters" role="search">
              <div class="field"><label for="job-state">State</label><select id="job-state" name="state">\(stateOptions)</select></div>
              <div class="field"><label for="job-model">Model</label><input id="job-model" name="model" list="job-models" value="\(filter.model ?? "")" placeholder="any model"><datalist id="job-models">\(modelOptions)</datalist></div>
              <button type="submit">Filter</button>
              \(filtered ? "<a href=\"/console/jobs\">Clear</a>" as HTML : .empty)
            </form>
            <div class="table-wrap">\(table)</div>
            <nav class="pager" aria-label="Pages">\(pager)</nav>
            """
        return viewer.page("Jobs", .jobs, body)
    }

    /// One job's page: its facts and what happened to it, attempt by attempt.
    /// - Parameters:
    ///   - raw: The job's id from the path.
    ///   - viewer: Who it is for.
    /// - Throws: ``ConsoleRefusal`` 404 when there is no such job.
    func jobPage(id raw: String?, for viewer: ConsoleViewer) async throws -> Response {
        guard let raw, let id = JobID(raw), let job = try await dispatcher.job(id) else {
            throw ConsoleRefusal(status: .notFound, message: "No such job (finished jobs are pruned after the retention period).")
        }
        let nodes = Dictionary(try await dispatcher.nodes().map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        let name = { (id: NodeID?) -> String in id.map { nodes[$0] ?? "a node no longer listed" } ?? "a node" }
        let nodeText: HTML =
            job.nodeID.map { id in
                "\(name(id)) <span class=\"muted mono\">\(id.description)</span>"
            } ?? "—"
        var steps: [HTML] = [
            "<li><strong>Accepted</strong> — \(ConsoleLayout.time(job.createdAt)); queued for a node serving \(job.model)</li>"
        ]
        for earlier in job.earlierAttempts {
            let held =
                earlier.leasedAt.map { " after \(ConsoleLayout.milliseconds(earlier.endedAt.timeIntervalSince($0) * 1000)) on it" } ?? ""
            steps.append(
                """
                <li class="bad"><strong>Leased</strong> (attempt \(earlier.attempt)) — \(ConsoleLayout.time(earlier.leasedAt)) by \(name(earlier.nodeID)); \
                <strong>handed back</strong> \(ConsoleLayout.time(earlier.endedAt))\(held): <code>\(earlier.reason)</code></li>
                """)
        }
        // The current attempt's lease (a job handed back and not leased again still shows the
        // previous attempt's time there: only a lease after the last hand-back counts).
        let queuedSince = job.earlierAttempts.last?.endedAt ?? job.createdAt
        if let leasedAt = job.leasedAt, leasedAt >= queuedSince {
            let wait = ConsoleLayout.milliseconds(leasedAt.timeIntervalSince(queuedSince) * 1000)
            steps.append(
                "<li><strong>Leased</strong> (attempt \(job.attempt)) — \(ConsoleLayout.time(leasedAt)) by \(name(job.nodeID)), after \(wait) in the queue</li>"
            )
        }
        if let finishedAt = job.finishedAt {
            let total = ConsoleLayout.milliseconds(finishedAt.timeIntervalSince(job.createdAt) * 1000)
            let running =
                job.leasedAt.flatMap {
                    $0 >= queuedSince ? " (\(ConsoleLayout.milliseconds(finishedAt.timeIntervalSince($0) * 1000)) on the node)" : nil
                } ?? ""
            steps.append(
                "<li\(job.state == .succeeded ? "" as HTML : " class=\"bad\"")><strong>\(Self.stateText(job.state).capitalized)</strong> — \(ConsoleLayout.time(finishedAt)), \(total) after it was accepted\(running)</li>"
            )
        } else {
            steps.append(
                "<li><strong>\(job.state == .leased ? "Running" : "Waiting")</strong> — its deadline is \(ConsoleLayout.time(job.deadline))</li>"
            )
        }
        let usage: HTML =
            job.usage.map { usage in
                "\(ConsoleLayout.number(usage.promptTokens)) prompt + \(ConsoleLayout.number(usage.completionTokens)) completion tokens"
            } ?? "—"
        let error: HTML =
            job.errorCode.map { code in
                "<dt>Error</dt><dd><code>\(code)</code>\(job.errorMessage.map { " — \($0)" } ?? "")</dd>"
            } ?? .empty
        let body: HTML = """
            <p><a href="/console/jobs">← All jobs</a></p>
            <h1>Job <span class="mono">\(job.id.description)</span></h1>
            <div class="charts">
              <section class="panel" aria-labelledby="job-facts">
                <h2 id="job-facts">Facts</h2>
                <dl class="facts">
                  <dt>State</dt><dd>\(Self.stateBadge(job.state))</dd>
                  <dt>Model</dt><dd>\(job.model)</dd>
                  <dt>Endpoint</dt><dd>/v1/\(job.endpoint.rawValue)\(job.stream ? " (streamed)" : "")</dd>
                  <dt>Attempts</dt><dd>\(job.attempt) of at most \(job.maxAttempts)</dd>
                  <dt>Node</dt><dd>\(nodeText)</dd>
                  <dt>Latency</dt><dd>\(ConsoleLayout.milliseconds(job.finishedAt.map { $0.timeIntervalSince(job.createdAt) * 1000 }))</dd>
                  <dt>Usage</dt><dd>\(usage)</dd>
                  \(error)
                  <dt>Deadline</dt><dd>\(ConsoleLayout.time(job.deadline))</dd>
                  <dt>Request id</dt><dd class="mono">\(job.requestID)</dd>
                  <dt>API key</dt><dd class="mono">\(job.apiKeyID ?? "—")</dd>
                  <dt>Idempotency key</dt><dd class="mono">\(job.idempotencyKey ?? "—")</dd>
                </dl>
              </section>
              <section class="panel" aria-labelledby="job-story">
                <h2 id="job-story">What happened</h2>
                <ol class="timeline">\(steps)</ol>
              </section>
            </div>
            """
        return viewer.page("Job", .jobs, body)
    }

    /// The jobs page's filter from its query; a bad value is refused as the admin API refuses it.
    static func jobFilter(_ parameter: (String) -> String?) throws -> (JobFilter, limit: Int) {
        do {
            return try AdminQuery.jobListing(emptyMeansAny: true) { name in name == "limit" ? nil : parameter(name) }
        } catch let error as MizanError {
            throw ConsoleRefusal(status: .badRequest, message: error.message)
        }
    }

    /// A job's state in words (`timed out`).
    static func stateText(_ state: JobState) -> String {
        state == .timedOut ? "timed out" : state.rawValue
    }

    /// A job's state as a coloured badge.
    static func stateBadge(_ state: JobState) -> HTML {
        let kind =
            switch state {
            case .succeeded: "ok"
            case .failed, .timedOut: "bad"
            case .accepted: "warn"
            case .leased: "info"
            }
        return ConsoleLayout.badge(stateText(state), kind: kind)
    }
}
