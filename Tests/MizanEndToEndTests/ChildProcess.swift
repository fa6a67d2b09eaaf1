import Foundation

/// A real executable of this package started as a child process, its output in a file.
/// Waits poll (asynchronously) rather than block, so they never starve the test's threads.
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let outputURL: URL

    /// Starts `name` from the build folder that holds the test bundle.
    convenience init(_ name: String, arguments: [String], environment: [String: String] = [:]) throws {
        try self.init(executable: Self.buildDirectory().appendingPathComponent(name), arguments: arguments, environment: environment)
    }

    /// Starts any executable.
    init(executable binary: URL, arguments: [String], environment: [String: String] = [:]) throws {
        let name = binary.lastPathComponent
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw ChildProcessError(message: "\(binary.path) is missing or not executable (the package executables come from swift build)")
        }
        outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-\(name)-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
        let output = try FileHandle(forWritingTo: outputURL)
        process.executableURL = binary
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        try process.run()
    }

    static func buildDirectory() -> URL {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.pathComponents.count > 1 {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("mizan-mock-provider").path) { return url }
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug")
    }

    var output: String { (try? String(contentsOf: outputURL, encoding: .utf8)) ?? "" }

    /// Waits until the output matches `pattern` and returns the first capture group.
    func waitForOutput(_ pattern: String, timeout: Duration = .seconds(20)) async throws -> String {
        let regex = try NSRegularExpression(pattern: pattern)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let text = output
            if let match = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)),
                let range = Range(match.range(at: 1), in: text)
            {
                return String(text[range])
            }
            guard process.isRunning else { throw ChildProcessError(message: "the process exited: \(text)") }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ChildProcessError(message: "no output matching \(pattern) within \(timeout): \(output)")
    }

    /// Waits for the process to end by itself and returns its exit status.
    func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                kill(process.processIdentifier, SIGKILL)
                throw ChildProcessError(message: "the process did not end within \(timeout): \(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Sends SIGTERM and waits for the exit status.
    func terminate(timeout: Duration = .seconds(20)) async throws -> Int32 {
        process.terminate()
        return try await waitForExit(timeout: timeout)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: outputURL)
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
