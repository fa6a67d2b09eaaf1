import Foundation
import Testing

/// The console in a real browser: headless Chromium driven by Selenium
/// (`Tests/browser/console_check.py`) against real gateway, agent and mock provider processes.
/// Chromium and its driver come from Debian (`apt-get install -y chromium chromium-driver`;
/// `.ci/run` installs them); a machine without them fails this test, saying so.
@Suite("The console in headless Chromium")
struct ConsoleBrowserTests {
    /// Where the screenshots of each page are kept (for a person to look at).
    static let screenshots = TestPython.packageRoot.appendingPathComponent(".build/console-screenshots")

    @Test func anOperatorSignsInCreatesAKeyAndANodeWatchesItAppearOpensAJobRevokesAndSignsOut() async throws {
        let python = try await TestPython.python(requiring: ["selenium"])
        let (mock, mockURL) = try await startMock(["--models", "console-model", "--tokens", "6"])
        let (gateway, url) = try await startGateway(["--node-stale-after", "10"])
        let work = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: work) }
        try? FileManager.default.removeItem(at: Self.screenshots)
        let script = TestPython.packageRoot.appendingPathComponent("Tests/browser/console_check.py")
        let run = try ChildProcess(
            executable: python,
            arguments: [
                script.path, "--gateway", url, "--admin-token", e2eAdminToken,
                "--agent", ChildProcess.buildDirectory().appendingPathComponent("mizan-agent").path,
                "--provider", "\(mockURL)/v1", "--model", "console-model", "--screenshots", Self.screenshots.path, "--work", work,
            ],
            environment: ["SE_AVOID_STATS": "true"]
        )
        let status = try await run.waitForExit(timeout: .seconds(240))
        #expect(status == 0, "\(run.output)\n--- agent:\n\((try? String(contentsOfFile: work + "/agent.log", encoding: .utf8)) ?? "")")
        #expect(run.output.contains("\nPASS"), "\(run.output)")
        for name in [
            "01-sign-in", "02-keys-created", "03-nodes-created", "04-nodes", "05-jobs", "06-job", "07-usage", "08-overview",
            "09-keys-revoked", "10-nodes-phone",
        ] {
            let size =
                (try? FileManager.default.attributesOfItem(atPath: Self.screenshots.appendingPathComponent("\(name).png").path)[.size]
                    as? Int) ?? 0
            #expect(size > 10_000, "the screenshot \(name).png was saved")
        }
        // Nothing the console did reached the log with a secret in it.
        #expect(!gateway.output.contains(e2eAdminToken))
        _ = try await gateway.terminate()
        _ = try await mock.terminate()
    }
}
