import Foundation
import Testing

/// A key's queueing settings (priority, weight, max queued) set, shown, changed and cleared with
/// the `mizan` CLI against a `mizan-gateway` process.
@Suite("Key queueing settings through the mizan CLI")
struct KeySchedulingProcessTests {
    /// A `keys show` or `--json` answer as an object.
    static func object(_ output: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]) ?? [:]
    }

    @Test func theCLISetsShowsChangesAndClearsThem() async throws {
        let (gateway, url) = try await startGateway()
        let created = try await mizan(
            ["keys", "create", "--name", "batch-jobs", "--priority", "batch", "--weight", "3", "--max-queued", "40", "--json"],
            gateway: url)
        #expect(created.status == 0, "\(created.output)")
        let key = Self.object(created.output)
        let id = try #require(key["id"] as? String, "\(created.output)")
        #expect(key["priority"] as? String == "batch" && key["weight"] as? Int == 3 && key["maxQueued"] as? Int == 40, "\(created.output)")

        let table = try await mizan(["keys", "list"], gateway: url)
        #expect(table.status == 0 && table.output.contains("QUEUEING"), "\(table.output)")
        #expect(table.output.contains("batch, weight 3, 40 queued at most"), "\(table.output)")

        let updated = try await mizan(["keys", "update", id, "--priority", "interactive", "--clear", "max-queued"], gateway: url)
        #expect(updated.status == 0, "\(updated.output)")
        #expect(updated.output.contains("queueing: interactive, weight 3"), "\(updated.output)")
        var shown = try await mizan(["keys", "show", id], gateway: url)
        var view = Self.object(shown.output)
        #expect(view["priority"] as? String == "interactive" && view["weight"] as? Int == 3, "\(shown.output)")
        #expect(view["maxQueued"] == nil && view["consumption"] == nil, "cleared, and not counted: \(shown.output)")

        let cleared = try await mizan(["keys", "update", id, "--clear", "priority", "--clear", "weight"], gateway: url)
        #expect(cleared.status == 0 && cleared.output.contains("queueing: standard"), "\(cleared.output)")
        shown = try await mizan(["keys", "show", id], gateway: url)
        view = Self.object(shown.output)
        #expect(view["priority"] == nil && view["weight"] == nil && view["maxQueued"] == nil, "\(shown.output)")

        // Bad values: one line naming what is allowed, and nothing is changed.
        let badPriority = try await mizan(["keys", "update", id, "--priority", "urgent"], gateway: url)
        #expect(badPriority.status != 0 && badPriority.output.contains("interactive, standard or batch"), "\(badPriority.output)")
        let badWeight = try await mizan(["keys", "create", "--name", "heavy", "--weight", "101"], gateway: url)
        #expect(badWeight.status != 0 && badWeight.output.contains("weight must be a whole number from 1 to 100"), "\(badWeight.output)")
        let badCap = try await mizan(["keys", "update", id, "--max-queued", "0"], gateway: url)
        #expect(badCap.status != 0 && badCap.output.contains("maxQueued must be a whole number from 1 to 1000000"), "\(badCap.output)")
        let badClear = try await mizan(["keys", "update", id, "--clear", "queue"], gateway: url)
        #expect(badClear.status != 0 && badClear.output.contains("max-queued"), "\(badClear.output)")
        let unchanged = Self.object(try await mizan(["keys", "show", id], gateway: url).output)
        #expect(unchanged["priority"] == nil && unchanged["weight"] == nil && unchanged["maxQueued"] == nil)
        _ = try await gateway.terminate()

        // The help explains each.
        let help = try ChildProcess("mizan", arguments: ["keys", "create", "--help"])
        _ = try await help.waitForExit()
        let words = help.output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for text in [
            "--priority", "interactive, standard (the default) or batch", "--promote-after", "X-Mizan-Priority", "--weight",
            "share among keys of its class", "--max-queued", "429",
        ] {
            #expect(words.contains(text), "\(text) in:\n\(help.output)")
        }
    }
}
