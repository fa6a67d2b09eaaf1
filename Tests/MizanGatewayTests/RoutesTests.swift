import Foundation
import MizanCore
import MizanGateway
import Testing

@Suite("Routes file and route table")
struct RoutesTests {
    @Test func parsesJSONWithDefaults() throws {
        let json =
            #"{"routes":[{"model":"gpt-4o-mini","baseURL":"https://api.openai.com/v1","apiKeyEnv":"OPENAI_API_KEY","priority":1,"#
            + #""timeoutSeconds":60},{"model":"gpt-4o-mini","baseURL":"http://127.0.0.1:8000/v1","upstreamModel":"local-7b"}]}"#
        let file = try RoutesFile.parse(Data(json.utf8), yaml: false)
        #expect(file.routes.count == 2)
        #expect(file.routes[0].upstreamModel == "gpt-4o-mini", "upstreamModel defaults to model")
        #expect(file.routes[1].upstreamModel == "local-7b")
        #expect(file.routes[1].priority == 100)
        #expect(file.routes[0].name == "gpt-4o-mini@api.openai.com#1")
    }

    @Test func parsesYAML() throws {
        let yaml = """
            routes:
              - model: llama3
                baseURL: http://127.0.0.1:11434/v1
                priority: 2
              - model: llama3
                baseURL: http://10.0.0.5:8000/v1
                upstreamModel: meta-llama/Llama-3-8B
                priority: 1
            """
        let file = try RoutesFile.parse(Data(yaml.utf8), yaml: true)
        #expect(file.routes.map(\.priority) == [2, 1])
        #expect(file.routes[1].upstreamModel == "meta-llama/Llama-3-8B")
    }

    @Test(arguments: [
        (#"{"routes":[{"baseURL":"http://x/v1"}]}"#, "missing 'model' at routes[0]"),
        (#"{"routes":[{"model":"m","baseURL":"ftp://x"}]}"#, "must be an http(s) URL"),
        (#"{"routes":[{"model":"m","baseURL":"http://x/v1","priority":"high"}]}"#, "wrong type at routes[0].priority"),
        (#"{"routes":[{"model":"m","baseURL":"http://x/v1","timeoutSeconds":0}]}"#, "timeoutSeconds must be positive"),
        ("not json", "not valid JSON"),
    ])
    func rejectsBadFiles(text: String, message: String) {
        #expect {
            _ = try RoutesFile.parse(Data(text.utf8), yaml: false, source: "routes.json")
        } throws: { error in
            guard let error = error as? MizanError else { return false }
            return error.code == .badRequest && error.message.contains(message) && error.message.hasPrefix("routes.json")
        }
    }

    @Test func missingFileIsAClearError() {
        #expect(throws: MizanError.self) { _ = try RoutesFile.load(path: "/nonexistent/routes.json") }
    }

    @Test func triesByPriorityAndCoolsDownFailingRoutes() {
        let primary = ProviderRoute(model: "m", baseURL: "http://a/v1", priority: 1)
        let secondary = ProviderRoute(model: "m", baseURL: "http://b/v1", priority: 2)
        let other = ProviderRoute(model: "n", baseURL: "http://c/v1")
        let table = RouteTable(routes: [secondary, other, primary], cooldown: .seconds(30), failuresBeforeCooldown: 2)
        let t0 = ContinuousClock.now
        #expect(table.models == ["m", "n"])
        #expect(table.candidates(for: "m", now: t0) == [primary, secondary])
        #expect(table.candidates(for: "unknown", now: t0).isEmpty)
        #expect(!table.recordFailure(primary, now: t0))
        #expect(table.candidates(for: "m", now: t0) == [primary, secondary], "one failure does not cool a route down")
        #expect(table.recordFailure(primary, now: t0))
        #expect(table.candidates(for: "m", now: t0) == [secondary, primary], "a cooling route goes last")
        #expect(table.isCoolingDown(primary, now: t0.advanced(by: .seconds(29))))
        #expect(table.candidates(for: "m", now: t0.advanced(by: .seconds(31))) == [primary, secondary], "the cool-down ends")
        table.recordFailure(primary, now: t0)
        table.recordSuccess(primary)
        table.recordFailure(primary, now: t0)
        #expect(!table.isCoolingDown(primary, now: t0), "a success clears the failure count")
    }
}

@Suite("Routes file: mistakes are named")
struct RoutesFileMistakeTests {
    @Test func refusesAnUnknownKeyWithItsLine() {
        let yaml = "routes:\n  - model: m\n    baseURL: http://127.0.0.1:9/v1\n    apikeyEnv: OPENAI_API_KEY\n"
        #expect {
            try RoutesFile.parse(Data(yaml.utf8), yaml: true, source: "routes.yaml")
        } throws: { error in
            (error as? MizanError)?.message == "routes.yaml:4: unknown key 'apikeyEnv' in routes[0]; did you mean 'apiKeyEnv'?"
        }
        let json = #"{"routes":[{"model":"m","baseURL":"http://127.0.0.1:9/v1"}],"rutes":[]}"#
        #expect {
            try RoutesFile.parse(Data(json.utf8), yaml: false, source: "routes.json")
        } throws: { error in
            let message = (error as? MizanError)?.message ?? ""
            return message.hasPrefix("routes.json:1: unknown key 'rutes' at the top level")
                && message.contains("known keys: models, routes")
        }
    }

    @Test func namesTheLineOfAYAMLSyntaxError() {
        let yaml = "routes:\n  - model: m\n   baseURL: [unclosed\n"
        #expect {
            try RoutesFile.parse(Data(yaml.utf8), yaml: true, source: "r.yaml")
        } throws: { error in
            let message = (error as? MizanError)?.message ?? ""
            return message.hasPrefix("r.yaml: not valid YAML") && message.contains("3:")
        }
    }

    @Test func readsEachModelsPlacementAndRefusesMistakes() throws {
        let yaml = """
            models:
              - {model: llama3, placement: local-first, spillAfterMs: 250}
              - {model: embed, placement: local-only}
              - {model: gpt, placement: cloud-only}
            routes:
              - {model: llama3, baseURL: "http://127.0.0.1:9/v1", weight: 3}
            """
        let file = try RoutesFile.parse(Data(yaml.utf8), yaml: true)
        #expect(file.models.map(\.placement) == [.localFirst, .localOnly, .cloudOnly])
        #expect(file.models.first?.spillAfterMs == 250 && file.models[1].spillAfterMs == 300)
        #expect(file.routes.first?.weight == 3)
        let policy = ModelPlacements(file.models)
        #expect(policy.order(model: "llama3", endpoint: .chatCompletions) == [.agentNodes, .providerRoutes])
        #expect(policy.order(model: "embed", endpoint: .embeddings) == [.agentNodes])
        #expect(policy.order(model: "gpt", endpoint: .chatCompletions) == [.providerRoutes])
        #expect(policy.order(model: "unnamed", endpoint: .chatCompletions) == [.providerRoutes, .agentNodes])
        #expect(policy.spillAfter(model: "llama3") == .milliseconds(250))
        #expect(policy.spillAfter(model: "embed") == nil)

        let mistakes: [(String, String)] = [
            (#"{"models":[{"model":"a","placement":"gpu-first"}]}"#, "unknown placement 'gpu-first'"),
            (#"{"models":[{"model":"a"},{"model":"a"}]}"#, "models[1] names 'a' a second time"),
            (#"{"models":[{"model":"a","spillAfterMs":-1}]}"#, "spillAfterMs must be 0 to 600000"),
            (#"{"models":[{"model":"a","spill":5}]}"#, "unknown key 'spill'"),
            (#"{"routes":[{"model":"a","baseURL":"http://h/v1","weight":0}]}"#, "weight must be 1 to 1000"),
        ]
        for (json, expected) in mistakes {
            #expect(throws: MizanError.self, "\(json)") { try RoutesFile.parse(Data(json.utf8), yaml: false) }
            do {
                _ = try RoutesFile.parse(Data(json.utf8), yaml: false)
            } catch let error as MizanError {
                #expect(error.message.contains(expected), "\(error.message)")
            }
        }
    }

    @Test func routesOfEqualPriorityShareByWeight() {
        let heavy = ProviderRoute(model: "m", baseURL: "http://heavy/v1", weight: 3)
        let light = ProviderRoute(model: "m", baseURL: "http://light/v1", weight: 1)
        let backup = ProviderRoute(model: "m", baseURL: "http://backup/v1", priority: 200)
        let table = RouteTable(routes: [light, heavy, backup])
        var firsts: [String: Int] = [:]
        for _ in 0..<4_000 {
            let order = table.candidates(for: "m")
            firsts[order[0].baseURL, default: 0] += 1
            // A lower priority always comes after.
            #expect(order.last?.baseURL == backup.baseURL)
        }
        // 3:1 within a few percent (4,000 draws: one standard deviation is under 1 %).
        let share = Double(firsts[heavy.baseURL, default: 0]) / 4_000
        #expect(share > 0.70 && share < 0.80, "the weight-3 route came first \(share) of the time")
    }
}
