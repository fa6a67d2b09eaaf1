import Foundation
import MizanCore
import MizanGateway
import MizanStore
import Testing

@Suite("Credentials and model catalog")
struct CredentialsTests {
    @Test func issuedKeysAuthenticateUntilRevoked() async throws {
        let store = InMemoryStore()
        let credentials = Credentials(store: store, adminToken: "admin-secret")
        let issued = try await credentials.issueKey(name: " ci ")
        #expect(issued.secret.hasPrefix("mzn_sk_"))
        #expect(issued.key.name == "ci")
        #expect(issued.secret.hasPrefix(issued.key.prefix) && issued.key.prefix.count == 12)
        let found = try await credentials.authenticateClient(issued.secret)
        #expect(found.id == issued.key.id)
        for bad in [nil, "", issued.secret + "x", "mzn_sk_other"] as [String?] {
            await #expect {
                _ = try await credentials.authenticateClient(bad)
            } throws: { error in
                (error as? MizanError)?.httpStatus == 401
            }
        }
        _ = try await credentials.revokeKey(issued.key.id)
        await #expect(throws: MizanError.self) { _ = try await credentials.authenticateClient(issued.secret) }
        await #expect(throws: MizanError.self) { _ = try await credentials.issueKey(name: "  ") }
    }

    @Test func aKeyRevokedElsewhereIsRefusedOnceTheCacheLifetimePassed() async throws {
        let store = InMemoryStore()
        let cached = Credentials(store: store, adminToken: nil, keyCacheLifetime: .milliseconds(300))
        let uncached = Credentials(store: store, adminToken: nil, keyCacheLifetime: .zero)
        let issued = try await cached.issueKey(name: "k")
        _ = try await cached.authenticateClient(issued.secret)
        _ = try await uncached.authenticateClient(issued.secret)
        // Revoked in the store directly, as another gateway instance would.
        _ = try await store.revokeAPIKey(issued.key.id, now: Date())
        await #expect(throws: MizanError.self) { _ = try await uncached.authenticateClient(issued.secret) }
        try await Task.sleep(for: .milliseconds(400))
        await #expect(throws: MizanError.self) { _ = try await cached.authenticateClient(issued.secret) }
    }

    @Test func adminTokenIsCheckedAndOptional() throws {
        let credentials = Credentials(store: InMemoryStore(), adminToken: "admin-secret")
        try credentials.authenticateAdmin("admin-secret")
        #expect(throws: MizanError.self) { try credentials.authenticateAdmin("admin-secreT") }
        #expect(throws: MizanError.self) { try credentials.authenticateAdmin(nil) }
        let disabled = Credentials(store: InMemoryStore(), adminToken: nil)
        #expect {
            try disabled.authenticateAdmin("anything")
        } throws: { error in
            (error as? MizanError)?.message.contains("disabled") == true
        }
    }

    @Test func bearerHeaderParsing() {
        #expect(Credentials.bearer("Bearer abc") == "abc")
        #expect(Credentials.bearer("bearer  abc ") == "abc")
        #expect(Credentials.bearer("Basic abc") == nil)
        #expect(Credentials.bearer("Bearer") == nil)
        #expect(Credentials.bearer("BEARER abc") == "abc")
        #expect(Credentials.bearer("Bearer \t abc\t") == "abc")
        #expect(Credentials.bearer("Bearerabc") == nil)
        #expect(Credentials.bearer("Bearer    ") == nil)
        #expect(Credentials.bearer("Bearer mzn_sk_é1") == "mzn_sk_é1")
        #expect(Credentials.bearer(nil) == nil)
    }

    @Test func catalogListsEachModelOnce() {
        let routes = RouteTable(routes: [
            ProviderRoute(model: "gpt", baseURL: "http://a/v1"), ProviderRoute(model: "gpt", baseURL: "http://b/v1"),
            ProviderRoute(model: "shared", baseURL: "http://c/v1"),
        ])
        let healthy = Node(name: "a", models: ["llama", "shared"], status: .active, health: .healthy)
        let sick = Node(name: "b", models: ["qwen"], status: .active, health: .unhealthy)
        let pending = Node(name: "c", models: ["ghost"], status: .pending)
        let list = ModelCatalog.list(routes: routes, nodes: [healthy, sick, pending])
        #expect(list.data.map(\.id) == ["gpt", "llama", "shared"])
        #expect(list.data.first { $0.id == "llama" }?.ownedBy == "mizan-agent")
        #expect(list.data.first { $0.id == "shared" }?.ownedBy == "mizan-route")
        #expect(ModelCatalog.source(of: "gpt", routes: routes, nodes: []) == .routes)
        #expect(ModelCatalog.source(of: "qwen", routes: routes, nodes: [sick]) == .agents, "known, though nothing healthy serves it (503)")
        #expect(ModelCatalog.source(of: "ghost", routes: routes, nodes: [pending]) == nil, "unknown (404)")
    }
}
