import Crypto
import Foundation
import Logging
import MizanGateway
import MizanStore
import Synchronization

/// The console's sign-in sessions: a signed cookie (`HttpOnly`, `SameSite=Strict`, expiring),
/// a CSRF token per session for every form, and the sign-in form's own token.
///
/// A session is not stored: its cookie carries its expiry and id under an HMAC whose key is
/// derived from the admin token's hash, so every gateway instance sharing the admin token
/// accepts it, a restart keeps it, and changing the admin token ends every session. Signing
/// out ends the session on this instance at once (its id is kept until it would have expired)
/// and removes the cookie from the browser.
final class ConsoleSessions: Sendable {
    /// A signed-in session.
    struct Session: Sendable, Equatable {
        /// Random, 128 bits, hex.
        var id: String
        var expires: Date
    }

    /// The session cookie's name.
    static let cookieName = "mizan_console"
    /// The cookie that ties the sign-in form to the browser that loaded it.
    static let signInCookieName = "mizan_console_signin"

    /// How long a session lasts.
    let lifetime: TimeInterval
    private let key: SymmetricKey
    /// Sessions signed out, as this instance knows, until they would have expired.
    private let ended = Mutex<[String: Date]>([:])
    private let logger: Logger?

    /// - Parameters:
    ///   - adminTokenHash: The admin token's hash; the signing key is derived from it.
    ///   - lifetime: How long a session lasts.
    init(adminTokenHash: Data, lifetime: TimeInterval, logger: Logger? = nil) {
        self.logger = logger
        var material = Data("mizan-console-session-v1".utf8)
        material.append(adminTokenHash)
        key = SymmetricKey(data: SHA256.hash(data: material))
        self.lifetime = lifetime
    }

    /// Starts a session.
    /// - Returns: The session and its cookie value.
    func start(now: Date = Date()) -> (session: Session, cookie: String) {
        let session = Session(id: Self.randomHex(bytes: 16), expires: now.addingTimeInterval(lifetime))
        let payload = "v1.\(Int(session.expires.timeIntervalSince1970)).\(session.id)"
        return (session, payload + "." + mac(payload))
    }

    /// The session a cookie value carries, when it is well formed, signed by this key,
    /// unexpired and not signed out.
    func session(fromCookie value: String?, now: Date = Date()) -> Session? {
        guard let value, value.utf8.count <= 200 else { return nil }
        let parts = value.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "v1", let seconds = Int(parts[1]), parts[2].utf8.count == 32 else { return nil }
        let payload = "v1.\(parts[1]).\(parts[2])"
        guard Self.constantTimeEquals(String(parts[3]), mac(payload)) else { return nil }
        let expires = Date(timeIntervalSince1970: Double(seconds))
        guard expires > now else { return nil }
        let id = String(parts[2])
        guard ended.withLock({ $0[id] == nil }) else { return nil }
        return Session(id: id, expires: expires)
    }

    /// Ends a session: on this instance at once, and in the store, so that every instance and
    /// a restart know it (a store that does not answer leaves it ended here only).
    func end(_ session: Session, in store: any AccessStore, now: Date = Date()) async {
        ended.withLock { ended in
            ended = ended.filter { $0.value > now }
            ended[session.id] = session.expires
        }
        do {
            try await store.endConsoleSession(session.id, expires: session.expires, now: now)
        } catch {
            logger?.warning("a console sign-out could not be stored; it holds on this instance", metadata: ["mizan.error": "\(error)"])
        }
    }

    /// Whether a session was signed out, here or (through the store) on any instance or before a restart.
    func isEnded(_ session: Session, in store: any AccessStore) async throws -> Bool {
        if ended.withLock({ $0[session.id] != nil }) { return true }
        guard try await store.isConsoleSessionEnded(session.id) else { return false }
        ended.withLock { $0[session.id] = session.expires }
        return true
    }

    /// The CSRF token of a session's forms.
    func csrfToken(for session: Session) -> String { mac("csrf." + session.id) }

    /// Whether a form's CSRF token belongs to the session.
    func checkCSRF(_ token: String?, for session: Session) -> Bool {
        guard let token else { return false }
        return Self.constantTimeEquals(token, csrfToken(for: session))
    }

    /// A new sign-in form: the nonce for its cookie and the token for its hidden field.
    func signInChallenge() -> (nonce: String, token: String) {
        let nonce = Self.randomHex(bytes: 16)
        return (nonce, mac("sign-in." + nonce))
    }

    /// Whether a sign-in form's token matches the nonce of the browser's cookie.
    func checkSignIn(nonce: String?, token: String?) -> Bool {
        guard let nonce, let token, nonce.utf8.count == 32 else { return false }
        return Self.constantTimeEquals(token, mac("sign-in." + nonce))
    }

    private func mac(_ text: String) -> String {
        Self.hex(HMAC<SHA256>.authenticationCode(for: Data(text.utf8), using: key))
    }

    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return hex((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text = [UInt8]()
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0xf)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Compares two strings in time that depends only on their lengths.
    static func constantTimeEquals(_ a: String, _ b: String) -> Bool {
        let (x, y) = (Array(a.utf8), Array(b.utf8))
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for (p, q) in zip(x, y) { difference |= p ^ q }
        return difference == 0
    }
}

/// Bounds failed console sign-ins: per client address a burst of 5, then one more a minute —
/// past it that address is refused (429). Across all addresses a burst of 30, then one every 10
/// seconds — past it every attempt is *slowed* (up to 2 s), never refused, so that a sender of
/// wrong tokens from many addresses cannot lock the operator out: a correct token from an
/// address that has not failed always gets in. A success does not refill.
final class SignInLimiter: Sendable {
    private struct Bucket {
        /// When the bucket is full again (GCRA's theoretical arrival time).
        var full: Date
    }

    private struct State {
        var perAddress: [String: Bucket] = [:]
        var global = Bucket(full: .distantPast)
    }

    static let perAddressBurst = 5
    static let perAddressInterval: TimeInterval = 60
    static let globalBurst = 30
    static let globalInterval: TimeInterval = 10
    /// Addresses remembered at most (the oldest full buckets are forgotten first).
    static let maxAddresses = 10_000

    private let state = Mutex(State())

    /// The longest an attempt is slowed while failures from everywhere are over the global bound.
    static let maxSlowdown: TimeInterval = 2

    /// How long `address` must wait before another attempt, or `nil` when it may try now.
    func retryAfter(address: String, now: Date = Date()) -> TimeInterval? {
        state.withLock { state in
            Self.wait(state.perAddress[address], burst: Self.perAddressBurst, interval: Self.perAddressInterval, now: now)
        }
    }

    /// How long to slow an attempt down while failures from all addresses are over the global
    /// bound (`nil`: not at all); it proceeds after it whatever the bound says.
    func slowdown(now: Date = Date()) -> TimeInterval? {
        state.withLock { state in
            Self.wait(state.global, burst: Self.globalBurst, interval: Self.globalInterval, now: now).map { min($0, Self.maxSlowdown) }
        }
    }

    /// Counts a failed attempt.
    func failed(address: String, now: Date = Date()) {
        state.withLock { state in
            if state.perAddress[address] == nil, state.perAddress.count >= Self.maxAddresses {
                state.perAddress = state.perAddress.filter { $0.value.full > now }
                if state.perAddress.count >= Self.maxAddresses, let oldest = state.perAddress.min(by: { $0.value.full < $1.value.full }) {
                    state.perAddress[oldest.key] = nil
                }
            }
            state.perAddress[address] = Self.spend(state.perAddress[address], interval: Self.perAddressInterval, now: now)
            state.global = Self.spend(state.global, interval: Self.globalInterval, now: now)
        }
    }

    private static func wait(_ bucket: Bucket?, burst: Int, interval: TimeInterval, now: Date) -> TimeInterval? {
        guard let bucket else { return nil }
        // Room for one more while the bucket is less than `burst` intervals from full.
        let allowedFrom = bucket.full.addingTimeInterval(-Double(burst) * interval)
        let wait = allowedFrom.timeIntervalSince(now) + interval
        return wait > 0 ? wait : nil
    }

    private static func spend(_ bucket: Bucket?, interval: TimeInterval, now: Date) -> Bucket {
        Bucket(full: max(bucket?.full ?? now, now).addingTimeInterval(interval))
    }
}
