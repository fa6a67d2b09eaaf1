import Foundation
import MizanCore

/// The rule for the names of keys and nodes: at most 200 characters, no control characters,
/// not only spaces; stored without surrounding spaces. (The OpenAPI document states the same.)
public enum Names {
    /// The longest name, in Unicode scalars.
    public static let maxLength = 200

    /// The name to store.
    /// - Parameters:
    ///   - name: The name as given.
    ///   - what: What it names (`key`, `node`), for the error's message.
    /// - Returns: The name without surrounding spaces.
    /// - Throws: `MizanError` `badRequest` naming the rule.
    public static func checked(_ name: String, of what: String) throws -> String {
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
