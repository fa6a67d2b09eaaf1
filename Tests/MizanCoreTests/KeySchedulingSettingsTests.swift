import Foundation
import MizanCore
import Testing

@Suite("A key's queueing settings: priority, weight, max queued")
struct KeySchedulingSettingsTests {
    static func policy(_ json: String) throws -> KeyPolicy {
        try JSONDecoder().decode(KeyPolicy.self, from: Data(json.utf8))
    }

    static func message(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch let error as MizanError {
            #expect(error.httpStatus == 400, "\(error)")
            return error.message
        } catch {
            return "not a MizanError: \(error)"
        }
    }

    @Test func aPolicyWithoutThemIsStandardOfWeightOneAndUncapped() throws {
        let policy = try Self.policy("{}")
        #expect(policy.priority == nil && policy.weight == nil && policy.maxQueued == nil)
        #expect(policy.priorityClass == .standard && policy.shareWeight == 1)
        #expect(String(decoding: try JSONEncoder().encode(policy), as: UTF8.self) == "{}", "nothing is written for what is unset")
    }

    @Test(arguments: PriorityClass.allCases)
    func theSettingsReadAndWriteTheirJSON(_ priority: PriorityClass) throws {
        let policy = try Self.policy(#"{"priority":"\#(priority.rawValue)","weight":7,"maxQueued":250}"#)
        #expect(policy == KeyPolicy(priority: priority, weight: 7, maxQueued: 250))
        #expect(policy.priorityClass == priority && policy.shareWeight == 7)
        try policy.validate()
        let object = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(policy)) as? [String: Any]
        #expect(object?["priority"] as? String == priority.rawValue)
        #expect(object?["weight"] as? Int == 7 && object?["maxQueued"] as? Int == 250)
        #expect(try JSONDecoder().decode(KeyPolicy.self, from: try JSONEncoder().encode(policy)) == policy)
    }

    @Test func theyAreNotAdmissionLimits() throws {
        let policy = KeyPolicy(priority: .interactive, weight: 100, maxQueued: 1)
        #expect(!policy.isCounted && !policy.countsTokens, "a key with only these settings is not counted")
        let limited = KeyPolicy(limits: .init(requestsPerMinute: 5), priority: .batch)
        #expect(limited.isCounted && !limited.countsTokens)
    }

    @Test func aBadPriorityIsRefusedNamingTheClasses() throws {
        for body in [#"{"priority":"urgent"}"#, #"{"priority":""}"#, #"{"priority":"Interactive"}"#] {
            let message = Self.message { _ = try Self.policy(body) }
            #expect(message?.contains("priority must be interactive, standard or batch") == true, "\(body): \(String(describing: message))")
            let patch = Self.message { _ = try JSONDecoder().decode(KeyPolicyPatch.self, from: Data(body.utf8)) }
            #expect(patch == message, "a patch says the same: \(String(describing: patch))")
        }
        #expect(throws: DecodingError.self, "a number is of the wrong type") { try Self.policy(#"{"priority":1}"#) }
    }

    @Test(arguments: [
        (KeyPolicy(weight: 0), "weight must be a whole number from 1 to 100"),
        (KeyPolicy(weight: 101), "weight must be a whole number from 1 to 100"),
        (KeyPolicy(weight: -3), "weight must be a whole number from 1 to 100"),
        (KeyPolicy(maxQueued: 0), "maxQueued must be a whole number from 1 to 1000000"),
        (KeyPolicy(maxQueued: 1_000_001), "maxQueued must be a whole number from 1 to 1000000"),
    ])
    func valuesOutOfRangeAreRefusedNamingTheField(_ policy: KeyPolicy, _ expected: String) {
        let message = Self.message { try policy.validate() }
        #expect(message?.contains(expected) == true, "\(String(describing: message))")
    }

    @Test func theBoundsAreAllowed() throws {
        for policy in [KeyPolicy(weight: 1, maxQueued: 1), KeyPolicy(weight: 100, maxQueued: 1_000_000)] {
            try policy.validate()
        }
    }

    @Test func aPatchSetsKeepsAndClearsEach() throws {
        let policy = KeyPolicy(models: ["m"], priority: .batch, weight: 3, maxQueued: 10)
        func patched(_ json: String) throws -> KeyPolicy {
            try JSONDecoder().decode(KeyPolicyPatch.self, from: Data(json.utf8)).applied(to: policy)
        }
        #expect(try patched("{}") == policy, "absent keeps")
        #expect(try patched(#"{"models":null}"#) == KeyPolicy(priority: .batch, weight: 3, maxQueued: 10), "others are kept")
        #expect(
            try patched(#"{"priority":"interactive","weight":9,"maxQueued":99}"#)
                == KeyPolicy(models: ["m"], priority: .interactive, weight: 9, maxQueued: 99), "values replace")
        let cleared = try patched(#"{"priority":null,"weight":null,"maxQueued":null}"#)
        #expect(cleared == KeyPolicy(models: ["m"]), "null clears")
        #expect(cleared.priorityClass == .standard && cleared.shareWeight == 1 && cleared.maxQueued == nil)
    }
}
