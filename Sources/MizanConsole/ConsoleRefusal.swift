import HTTPTypes

/// A console request refused for the client's fault, shown as an error page.
struct ConsoleRefusal: Error {
    var status: HTTPResponse.Status
    var message: String

    /// A form without this session's CSRF token.
    static let csrf = ConsoleRefusal(
        status: .forbidden, message: "This form expired or did not come from this console. Reload the page and try again.")
    /// A form sent from another site.
    static let crossOrigin = ConsoleRefusal(status: .forbidden, message: "The console refuses requests sent from another site.")
}
