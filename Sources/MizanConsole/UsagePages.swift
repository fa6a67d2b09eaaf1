import Foundation
import HTTPTypes
import Hummingbird
import MizanCore
import MizanGateway
import MizanStore

/// The usage page: tokens and requests by key and model over a chosen range of UTC days, a
/// daily chart, and the same figures as CSV.
struct UsagePages: Sendable {
    /// The usage records and the keys' names.
    let access: any AccessStore

    /// The most days a range may span.
    static let maxUsageDays = 400

    /// The range of a usage page: whole UTC days from `since` to `until` (inclusive), the last
    /// 7 days by default.
    static func usageRange(_ parameter: (String) -> String?, now: Date = Date()) throws -> (since: Date, until: Date) {
        let today = (now.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400
        func day(_ name: String) throws -> Date? {
            guard let raw = parameter(name), !raw.isEmpty else { return nil }
            guard raw.utf8.count == 10, let date = ISO8601Text.date(from: raw, allowingDate: true) else {
                throw ConsoleRefusal(status: .badRequest, message: "Dates are written 2027-01-31.")
            }
            return date
        }
        let until = (try day("until") ?? Date(timeIntervalSince1970: today)).addingTimeInterval(86_400)
        let since = try day("since") ?? until.addingTimeInterval(-7 * 86_400)
        guard since < until else { throw ConsoleRefusal(status: .badRequest, message: "The range must start on or before its last day.") }
        guard until.timeIntervalSince(since) <= Double(maxUsageDays) * 86_400 else {
            throw ConsoleRefusal(status: .badRequest, message: "A range spans at most \(maxUsageDays) days.")
        }
        return (since, until)
    }

    /// The usage page for the query's range (`since`, `until`).
    /// - Parameters:
    ///   - query: The value of each of the page's query parameters.
    ///   - viewer: Who it is for.
    /// - Throws: ``ConsoleRefusal`` 400 for a range that is not one.
    func page(query: (String) -> String?, for viewer: ConsoleViewer) async throws -> Response {
        let (since, until) = try Self.usageRange(query)
        async let byKeyAndModel = access.usage(UsageQuery(since: since, until: until, groupBy: [.key, .model]))
        async let byDay = access.usage(UsageQuery(since: since, until: until, groupBy: [.day]))
        async let keysRead = access.apiKeys()
        let (rows, days, keys) = try await (byKeyAndModel, byDay, keysRead)
        let names = Dictionary(keys.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })

        let sorted = rows.sorted { ($0.promptTokens + $0.completionTokens) > ($1.promptTokens + $1.completionTokens) }
        let tableRows = sorted.map { row -> HTML in
            let key = row.apiKeyID.map { names[$0] ?? $0 } ?? "no key"
            return """
                <tr><td data-label="Key">\(key)</td><td data-label="Model">\(row.model ?? "—")</td>
                <td class="num" data-label="Requests">\(ConsoleLayout.number(row.requests))</td>
                <td class="num" data-label="Prompt tokens">\(ConsoleLayout.number(row.promptTokens))</td>
                <td class="num" data-label="Completion tokens">\(ConsoleLayout.number(row.completionTokens))</td>
                <td class="num" data-label="Total tokens">\(ConsoleLayout.number(row.promptTokens + row.completionTokens))</td></tr>
                """
        }
        let totalRequests = rows.reduce(0) { $0 + $1.requests }
        let totalTokens = rows.reduce(0) { $0 + $1.promptTokens + $1.completionTokens }

        // One bar per day of the range, empty days included.
        let perDay = Dictionary(days.compactMap { row in row.period.map { ($0, row) } }, uniquingKeysWith: { first, _ in first })
        var bars: [ConsoleCharts.Bar] = []
        var day = since
        while day < until {
            let row = perDay[day]
            let tokens = (row?.promptTokens ?? 0) + (row?.completionTokens ?? 0)
            bars.append(
                .init(
                    value: Double(tokens),
                    title: "\(String(ISO8601Text.text(day).prefix(10))): \(tokens) tokens, \(row?.requests ?? 0) requests"))
            day = day.addingTimeInterval(86_400)
        }
        let sinceText = String(ISO8601Text.text(since).prefix(10))
        let untilText = String(ISO8601Text.text(until.addingTimeInterval(-86_400)).prefix(10))
        let range = "since=\(sinceText)&until=\(untilText)"
        let table: HTML =
            tableRows.isEmpty
            ? "<p class=\"empty\">No requests in this range.</p>"
            : """
            <table class="responsive"><thead><tr><th scope="col">Key</th><th scope="col">Model</th><th scope="col" class="num">Requests</th>
            <th scope="col" class="num">Prompt tokens</th><th scope="col" class="num">Completion tokens</th><th scope="col" class="num">Total tokens</th></tr></thead>
            <tbody>\(tableRows)</tbody></table>
            """
        let body: HTML = """
            <h1>Usage</h1>
            <form method="get" action="/console/usage" class="filters">
              <div class="field"><label for="usage-since">From (UTC day)</label><input id="usage-since" name="since" type="date" value="\(sinceText)"></div>
              <div class="field"><label for="usage-until">To (UTC day, included)</label><input id="usage-until" name="until" type="date" value="\(untilText)"></div>
              <button type="submit">Show</button>
              <a href="/console/usage.csv?\(range)" download>Download CSV</a>
            </form>
            <div class="tiles">
              <div class="tile"><div class="label">Requests</div><div class="value">\(ConsoleLayout.number(totalRequests))</div><div class="sub">\(sinceText) to \(untilText)</div></div>
              <div class="tile"><div class="label">Tokens</div><div class="value">\(ConsoleLayout.number(totalTokens))</div><div class="sub">prompt and completion</div></div>
            </div>
            <section class="panel chart" aria-labelledby="usage-daily">
              <h2 id="usage-daily">Tokens per day (UTC)</h2>
              \(ConsoleCharts.bars(bars, label: "Tokens per day from \(sinceText) to \(untilText)."))
            </section>
            <h2>By key and model</h2>
            <div class="table-wrap">\(table)</div>
            """
        return viewer.page("Usage", .usage, body)
    }

    /// The usage of the query's range (`since`, `until`) by day, key and model, as a CSV
    /// download.
    /// - Parameter query: The value of each of the request's query parameters.
    /// - Throws: ``ConsoleRefusal`` 400 for a range that is not one.
    func csv(query: (String) -> String?) async throws -> Response {
        let (since, until) = try Self.usageRange(query)
        async let rowsRead = access.usage(UsageQuery(since: since, until: until, groupBy: [.day, .key, .model]))
        async let keysRead = access.apiKeys()
        let (rows, keys) = try await (rowsRead, keysRead)
        let names = Dictionary(keys.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        var csv = "day,key_id,key_name,model,requests,prompt_tokens,completion_tokens\r\n"
        for row in rows.sorted(by: {
            ($0.period ?? .distantPast, $0.apiKeyID ?? "", $0.model ?? "") < ($1.period ?? .distantPast, $1.apiKeyID ?? "", $1.model ?? "")
        }) {
            let fields = [
                row.period.map { String(ISO8601Text.text($0).prefix(10)) } ?? "", row.apiKeyID ?? "",
                row.apiKeyID.flatMap { names[$0] } ?? "",
                row.model ?? "", String(row.requests), String(row.promptTokens), String(row.completionTokens),
            ]
            csv += fields.map(Self.csvField).joined(separator: ",") + "\r\n"
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/csv; charset=utf-8"
        let name =
            "mizan-usage-\(String(ISO8601Text.text(since).prefix(10)))-to-\(String(ISO8601Text.text(until.addingTimeInterval(-86_400)).prefix(10))).csv"
        headers[.contentDisposition] = "attachment; filename=\"\(name)\""
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: csv)))
    }

    /// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is defused so that a
    /// spreadsheet does not run a key's name as a formula.
    static func csvField(_ value: String) -> String {
        var value = value
        if let first = value.first, "=+-@\t\r".contains(first) { value = "'" + value }
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
