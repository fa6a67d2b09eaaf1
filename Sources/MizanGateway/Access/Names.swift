import Foundation
import MizanCore

/// The rule for the names of keys and nodes: at most 200 characters, no control characters,
/// not only spaces; stored without surrounding spaces. (The OpenAPI document states the same.)
enum Names {
    static let maxLength = 200

    /// The name to store.
    /// - Throws: `MizanError` `badRequest` naming the rule.
    static func checked(_ name: String, of what: String) throws -> String {
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, name.unicodeScalars.count <= maxLength,
            !SafeText.containsControlCharacters(name)
        else {
            throw MizanError(
                .badRequest, "A \(what) needs a name of 1 to \(maxLength) characters, not only spaces, with no control characters.")
        }
        return trimmed
    }
}
