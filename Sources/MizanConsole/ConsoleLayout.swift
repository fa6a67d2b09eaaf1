import Foundation
import MizanCore
import MizanGateway

/// The console's page chrome and the small pieces every page uses (times, numbers, tables).
enum ConsoleLayout {
    /// The console's sections, in the navigation's order.
    enum Section: String, CaseIterable {
        case overview, nodes, keys, jobs, batches, usage

        var title: String { rawValue.prefix(1).uppercased() + rawValue.dropFirst() }
        var path: String { self == .overview ? "/console" : "/console/\(rawValue)" }
    }

    /// A whole page: head, skip link, navigation with sign-out (when signed in), the body in
    /// `<main>`, and the footer.
    static func page(title: String, current: Section?, session: ConsoleSessions.Session?, csrf: String?, body: HTML) -> HTML {
        let navigation: HTML
        if session != nil, let csrf {
            let links = Section.allCases.map { section -> HTML in
                let marker: HTML = section == current ? #" aria-current="page""# : .empty
                return "<li><a href=\"\(section.path)\"\(marker)>\(section.title)</a></li>"
            }
            navigation = """
                <nav aria-label="Console"><ul>\(links)</ul></nav>
                <form method="post" action="/console/sign-out" class="sign-out">
                  <input type="hidden" name="csrf" value="\(csrf)"><button type="submit" class="link">Sign out</button>
                </form>
                """
        } else {
            navigation = .empty
        }
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="referrer" content="no-referrer">
            <title>\(title) · Mizan</title>
            <link rel="stylesheet" href="/console/assets/console.css?v=\(MizanVersion.current)">
            <script src="/console/assets/console.js?v=\(MizanVersion.current)" defer></script>
            </head>
            <body>
            <a class="skip" href="#main">Skip to the content</a>
            <header class="top">
              <a class="brand" href="/console">Mizan</a>
              \(navigation)
            </header>
            <main id="main" tabindex="-1">
            \(body)
            </main>
            <footer>Mizan \(MizanVersion.current) · times are shown in your time zone</footer>
            </body>
            </html>
            """
    }

    /// A time the browser shows in the viewer's time zone (UTC until the script runs).
    static func time(_ date: Date?, relative: Bool = false) -> HTML {
        guard let date else { return "<span class=\"muted\">—</span>" }
        let iso = ISO8601Text.text(date)
        let marker: HTML = relative ? " data-relative" : .empty
        return "<time datetime=\"\(iso)\"\(marker)>\(utcText(date))</time>"
    }

    /// `2026-12-06 05:17 UTC`.
    static func utcText(_ date: Date) -> String {
        let iso = ISO8601Text.text(date)  // 2026-12-06T05:17:14Z or with fractions
        return String(iso.prefix(10)) + " " + String(iso.dropFirst(11).prefix(5)) + " UTC"
    }

    /// A count with thousands separators: `12,345`.
    static func number(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (index, digit) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { grouped += "," }
            grouped.append(digit)
        }
        return (value < 0 ? "-" : "") + grouped
    }

    /// Milliseconds, readable: `0.42 ms`, `12 ms`, `3.4 s`.
    static func milliseconds(_ value: Double?) -> String {
        guard let value else { return "—" }
        if value >= 10_000 { return "\(Int((value / 1000).rounded())) s" }
        if value >= 1000 { return "\((value / 100).rounded() / 10) s" }
        if value >= 10 { return "\(Int(value.rounded())) ms" }
        return "\((value * 100).rounded() / 100) ms"
    }

    /// A share as a percentage: `2.5 %`.
    static func percent(_ part: Int, of whole: Int) -> String {
        guard whole > 0 else { return "—" }
        let value = Double(part) / Double(whole) * 100
        return value >= 10 ? "\(Int(value.rounded())) %" : "\((value * 10).rounded() / 10) %"
    }

    /// A notice shown at the top of a page.
    static func notice(_ text: String, error: Bool = false) -> HTML {
        error ? "<p class=\"notice error\" role=\"alert\">\(text)</p>" : "<p class=\"notice\" role=\"status\">\(text)</p>"
    }

    /// A hidden CSRF field.
    static func csrfField(_ token: String) -> HTML {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(token)\">"
    }

    /// A badge for a state or status word (its class colours it).
    static func badge(_ text: String, kind: String) -> HTML {
        "<span class=\"badge \(kind)\">\(text)</span>"
    }
}

extension NodeCondition {
    /// The console's badge for the condition.
    var badgeKind: String {
        switch self {
        case .healthy: "ok"
        case .unhealthy, .stale, .disconnected: "bad"
        case .pending: "warn"
        case .revoked: "muted"
        }
    }
}
