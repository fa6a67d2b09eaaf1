import Crypto
import Foundation

/// Random bearer secrets and their hashes. Secrets are stored only as SHA-256 hashes and
/// compared in constant time.
public enum Secrets {
    /// A new random secret: 32 bytes (256 bits) in URL-safe base64 after `prefix`.
    /// - Parameter prefix: A readable prefix such as `mzn_node_`.
    /// - Returns: The secret.
    public static func generate(prefix: String) -> String {
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let text = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        return prefix + text
    }

    /// The SHA-256 hash of a secret.
    /// - Parameter secret: The secret.
    /// - Returns: 32 bytes.
    public static func hash(_ secret: String) -> Data {
        Data(SHA256.hash(data: Data(secret.utf8)))
    }

    /// Compares two byte strings in time that depends only on their lengths.
    /// - Returns: Whether they are equal.
    public static func constantTimeEquals(_ a: Data, _ b: Data) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for (x, y) in zip(a, b) { difference |= x ^ y }
        return difference == 0
    }

    /// Whether `secret` hashes to `hash`, compared in constant time.
    /// - Returns: Whether they match.
    public static func matches(_ secret: String, hash: Data) -> Bool {
        constantTimeEquals(Self.hash(secret), hash)
    }
}
