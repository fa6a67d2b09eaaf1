import Foundation
import Synchronization

/// The Python the end-to-end tests drive real clients with (the official `openai` SDK,
/// schemathesis): `MIZAN_TEST_PYTHON` (or `MIZAN_OPENAI_PYTHON`), else a virtual environment in
/// `.build/openai-venv`, made here with pip when a module is missing (`.ci/run` makes it first).
enum TestPython {
    /// The package's root folder.
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Every module a test asks for, installed together on first use.
    static let modules = ["openai", "anthropic", "schemathesis", "selenium"]

    /// The one preparation of the environment: tests run in parallel, and a second test must
    /// not find the folder half made (a `python` before its `pip`) or install beside the first.
    private static let prepared = Mutex<Task<URL, any Error>?>(nil)

    /// A Python that imports every module in `modules` (the PyPI package of the same name).
    static func python(requiring modules: [String]) async throws -> URL {
        precondition(Set(modules).isSubset(of: Self.modules), "add \(modules) to TestPython.modules")
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["MIZAN_TEST_PYTHON"] ?? environment["MIZAN_OPENAI_PYTHON"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        let task = prepared.withLock { task in
            if let task { return task }
            let made = Task { try await prepare() }
            task = made
            return made
        }
        return try await task.value
    }

    /// Makes `.build/openai-venv` when missing and installs what it lacks of ``modules``.
    private static func prepare() async throws -> URL {
        let venv = packageRoot.appendingPathComponent(".build/openai-venv")
        let python = venv.appendingPathComponent("bin/python")
        if !FileManager.default.isExecutableFile(atPath: python.path) {
            let create = try ChildProcess(
                executable: URL(fileURLWithPath: "/usr/bin/env"), arguments: ["python3", "-m", "venv", venv.path])
            guard try await create.waitForExit() == 0 else { throw ChildProcessError(message: "python3 -m venv failed: \(create.output)") }
        }
        var missing: [String] = []
        for module in modules {
            let probe = try ChildProcess(executable: python, arguments: ["-c", "import \(module)"])
            if try await probe.waitForExit() != 0 { missing.append(module) }
        }
        if !missing.isEmpty {
            let install = try ChildProcess(executable: venv.appendingPathComponent("bin/pip"), arguments: ["install", "--quiet"] + missing)
            guard try await install.waitForExit(timeout: .seconds(600)) == 0 else {
                throw ChildProcessError(message: "pip install \(missing.joined(separator: " ")) failed: \(install.output)")
            }
        }
        return python
    }
}
