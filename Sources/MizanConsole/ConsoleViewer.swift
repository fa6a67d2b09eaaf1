import Hummingbird

/// The signed-in operator a page is rendered for: the session, and the CSRF token its forms
/// carry. The page types render for a viewer without knowing how sessions are signed.
struct ConsoleViewer: Sendable, Equatable {
    /// The signed-in session.
    var session: ConsoleSessions.Session
    /// The CSRF token of the session's forms.
    var csrf: String

    /// The viewer of a session.
    /// - Parameters:
    ///   - session: The signed-in session.
    ///   - sessions: The sessions that sign its CSRF token.
    init(_ session: ConsoleSessions.Session, of sessions: ConsoleSessions) {
        self.init(session: session, csrf: sessions.csrfToken(for: session))
    }

    /// A viewer with a given CSRF token.
    init(session: ConsoleSessions.Session, csrf: String) {
        self.session = session
        self.csrf = csrf
    }

    /// A page in the console's chrome for this viewer (navigation, sign-out form), as a 200.
    /// - Parameters:
    ///   - title: The page's title.
    ///   - current: The section the navigation marks as current.
    ///   - body: What goes in `<main>`.
    func page(_ title: String, _ current: ConsoleLayout.Section?, _ body: HTML) -> Response {
        ConsoleHTTP.html(ConsoleLayout.page(title: title, current: current, session: session, csrf: csrf, body: body))
    }

    /// A page that asks once more before a destructive action (when the page's script did not).
    /// - Parameters:
    ///   - title: The page's title and heading.
    ///   - question: What is asked.
    ///   - action: Where the confirmed form goes.
    ///   - button: The confirming button's label.
    ///   - back: Where "Cancel" leads.
    ///   - section: The section the navigation marks as current.
    func confirmation(
        title: String, question: String, action: String, button: String, back: String, section: ConsoleLayout.Section
    ) -> Response {
        let body: HTML = """
            <h1>\(title)</h1>
            <section class="panel">
              <p>\(question)</p>
              <form method="post" action="\(action)" class="form-actions">
                \(ConsoleLayout.csrfField(csrf))
                <input type="hidden" name="confirmed" value="1">
                <button type="submit" class="danger">\(button)</button>
                <a href="\(back)">Cancel</a>
              </form>
            </section>
            """
        return page(title, section, body)
    }
}
