/// A notice a page shows after a redirect asked for it (`?notice=`): a fixed text, so that a
/// link cannot put words in the console's mouth.
enum ConsoleNotice: String, CaseIterable, Sendable {
    case nodeRevoked = "node-revoked"
    case keyRevoked = "key-revoked"
    case keySaved = "key-saved"
    case batchCancelling = "batch-cancelling"
    case batchEnded = "batch-ended"

    /// The notice a query's `notice` value names, if any.
    init?(query value: String?) {
        guard let value else { return nil }
        self.init(rawValue: value)
    }

    /// What the page says.
    var text: String {
        switch self {
        case .nodeRevoked: "The node was revoked: its agent's token stops working at once and its jobs go back to the queue."
        case .keyRevoked:
            "The key was revoked: requests with it are refused from now on (on other gateway instances within their key cache)."
        case .keySaved: "The key's settings were saved."
        case .batchCancelling: "The batch is cancelling: its running lines finish, the rest do not start."
        case .batchEnded: "The batch had already ended, so it was not cancelled."
        }
    }

    /// Whether the notice reports something that was not done (shown as an error).
    var isError: Bool { self == .batchEnded }

    /// A console path with this notice asked for (`/console/keys?notice=key-revoked`).
    func on(_ path: String) -> String {
        "\(path)?notice=\(rawValue)"
    }
}
