import Foundation
import MizanCore
import MizanGateway
import MizanStore
import MizanTestSupport
import Testing

@Suite("Admin API over loopback")
struct AdminAPITests {
    let admin = Harness.adminToken

    @Test func nodesAreCreatedListedAndRevoked() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let created = try await gateway.send(
                .POST, "/admin/v1/nodes", token: admin, body: #"{"name":"gpu-box","labels":{"zone":"lab"}}"#)
            #expect(created.status == 201)
            let id = try #require(created.json["id"] as? String)
            #expect((created.json["registrationToken"] as? String)?.hasPrefix("mzn_reg_") == true)
            let listed = try await gateway.send(.GET, "/admin/v1/nodes", token: admin)
            let nodes = try #require(listed.json["data"] as? [[String: Any]])
            #expect(nodes.count == 1)
            #expect(nodes.first?["name"] as? String == "gpu-box")
            #expect(nodes.first?["status"] as? String == "pending")
            #expect(!listed.text.contains("mzn_reg_"))
            let revoked = try await gateway.send(.DELETE, "/admin/v1/nodes/\(id)", token: admin)
            #expect(revoked.status == 200 && revoked.json["status"] as? String == "revoked")
            #expect(try await gateway.send(.DELETE, "/admin/v1/nodes/\(NodeID())", token: admin).status == 404)
            #expect(try await gateway.send(.DELETE, "/admin/v1/nodes/zzz", token: admin).status == 400)
            #expect(try await gateway.send(.POST, "/admin/v1/nodes", token: admin, body: #"{"name":" "}"#).status == 400)
            #expect(try await gateway.send(.POST, "/admin/v1/nodes", token: admin, body: #"{}"#).status == 400)
        }
    }

    @Test func keysAreShownOnceAndListedWithoutSecrets() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let created = try await gateway.send(.POST, "/admin/v1/keys", token: admin, body: #"{"name":"ci"}"#)
            #expect(created.status == 201)
            let key = try #require(created.json["key"] as? String)
            let listed = try await gateway.send(.GET, "/admin/v1/keys", token: admin)
            let keys = try #require(listed.json["data"] as? [[String: Any]])
            #expect(keys.count == 2)
            #expect(!listed.text.contains(key))
            #expect(!listed.text.contains(gateway.apiKey))
            #expect(keys.contains { $0["name"] as? String == "ci" && ($0["prefix"] as? String).map(key.hasPrefix) == true })
            #expect(try await gateway.send(.DELETE, "/admin/v1/keys/no-such-key", token: admin).status == 404)
        }
    }

    @Test func aKeyIsNamedByItsIdOrItsName() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let created = try await gateway.send(.POST, "/admin/v1/keys", token: admin, body: #"{"name":"team-a"}"#)
            let id = try #require(created.json["id"] as? String)
            let byName = try await gateway.send(.GET, "/admin/v1/keys/team-a", token: admin)
            #expect(byName.status == 200 && byName.json["id"] as? String == id, "\(byName.text)")
            let changed = try await gateway.send(.PATCH, "/admin/v1/keys/team-a", token: admin, body: #"{"name":"team-b"}"#)
            #expect(changed.status == 200 && changed.json["name"] as? String == "team-b", "\(changed.text)")
            #expect(try await gateway.send(.GET, "/admin/v1/keys/team-a", token: admin).status == 404)
            // Two active keys of one name: the name is ambiguous, the ids are not.
            _ = try await gateway.send(.POST, "/admin/v1/keys", token: admin, body: #"{"name":"team-b"}"#)
            let ambiguous = try await gateway.send(.GET, "/admin/v1/keys/team-b", token: admin)
            #expect(ambiguous.status == 409, "\(ambiguous.text)")
            #expect(try await gateway.send(.GET, "/admin/v1/keys/\(id)", token: admin).status == 200)
            let revoked = try await gateway.send(.DELETE, "/admin/v1/keys/\(id)", token: admin)
            #expect(revoked.status == 200)
            // The revoked one no longer shares the name.
            #expect(try await gateway.send(.GET, "/admin/v1/keys/team-b", token: admin).status == 200)
        }
    }

    @Test func jobsAreListedByStateAndShownWithoutContent() async throws {
        try await withGateway(inProcess: true) { (gateway: Harness) async throws in
            let node = try await gateway.registerNode(models: ["m"])
            async let answer = gateway.chat(model: "m")
            let job = try #require(try await gateway.lease(token: node.token).first)
            let leased = try await gateway.send(.GET, "/admin/v1/jobs?state=leased&limit=10", token: admin)
            #expect(leased.status == 200)
            let rows = try #require(leased.json["data"] as? [[String: Any]])
            #expect(rows.map { $0["id"] as? String } == [job.jobID.description])
            #expect(!leased.text.contains("say two words"))
            #expect(try await gateway.complete(job, token: node.token).status == 200)
            #expect(try await answer.status == 200)
            let shown = try await gateway.send(.GET, "/admin/v1/jobs/\(job.jobID)", token: admin)
            #expect(shown.json["state"] as? String == "succeeded")
            #expect(shown.json["nodeID"] as? String == node.id)
            #expect(try await gateway.send(.GET, "/admin/v1/jobs?state=leased", token: admin).json["data"] as? [Any] != nil)
            #expect(try await gateway.send(.GET, "/admin/v1/jobs?state=lost", token: admin).status == 400)
            #expect(try await gateway.send(.GET, "/admin/v1/jobs?limit=0", token: admin).status == 400)
            #expect(try await gateway.send(.GET, "/admin/v1/jobs/\(JobID())", token: admin).status == 404)
        }
    }

    @Test func usageIsSummedByKeyAndModel() async throws {
        try await withMock(.init(models: ["a", "b"], tokens: 2)) { base in
            let routes = [ProviderRoute(model: "a", baseURL: base), ProviderRoute(model: "b", baseURL: base)]
            try await withGateway(routes: routes, inProcess: true) { (gateway: Harness) async throws in
                for model in ["a", "a", "b"] { #expect(try await gateway.chat(model: model).status == 200) }
                #expect(
                    try await eventually {
                        let usage = try await gateway.send(.GET, "/admin/v1/usage", token: admin)
                        let rows = (usage.json["data"] as? [[String: Any]]) ?? []
                        let byModel = Dictionary(
                            uniqueKeysWithValues: rows.compactMap { row in (row["model"] as? String).map { ($0, row) } })
                        return byModel["a"]?["requests"] as? Int == 2 && byModel["a"]?["completionTokens"] as? Int == 4
                            && byModel["b"]?["requests"] as? Int == 1
                    })
            }
        }
    }

    @Test func withoutAnAdminTokenTheAdminAPIIsOff() async throws {
        let store = InMemoryStore()
        let gateway = Gateway(store: store, adminToken: nil)
        try await withServer({ gateway.application(port: 0, onServerRunning: $0) }) { port in
            let harness = Harness(gateway: gateway, store: store, port: port, apiKey: "")
            let answer = try await harness.send(.GET, "/admin/v1/nodes", token: "")
            #expect(answer.status == 401)
            #expect(answer.errorMessage?.contains("disabled") == true)
        }
    }
}
