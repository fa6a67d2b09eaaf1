import Foundation
import MizanPostgresTesting

/// A real executable of this package started as a child process, its output in a file.
///
/// Started with `posix_spawn` (no inherited descriptors) rather than Foundation's `Process`;
/// waits poll `waitpid` asynchronously, so they never block the test's threads.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    let outputURL: URL
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// Starts `name` from the build folder that holds the test bundle.
    convenience init(_ name: String, arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil) throws {
        try self.init(
            executable: Self.buildDirectory().appendingPathComponent(name), arguments: arguments, environment: environment,
            workingDirectory: workingDirectory)
    }

    /// Starts any executable.
    init(executable binary: URL, arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil) throws {
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw ChildProcessError(message: "\(binary.path) is missing or not executable (the package executables come from swift build)")
        }
        outputURL = FileManager.default.temporaryDirectory.appendingPathComponent(
            "mizan-\(binary.lastPathComponent)-\(UUID().uuidString).log")
        pid = try Spawn.start(
            executable: binary.path, arguments: arguments, environment: environment, outputPath: outputURL.path,
            workingDirectory: workingDirectory)
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

    /// Whether the process still runs (reaps it once it has ended).
    var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard exitStatus == nil else { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid {
            exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            return false
        }
        if result < 0 && errno == ECHILD {
            exitStatus = -1
            return false
        }
        return true
    }

    /// The exit status (128 + signal when killed by one); valid once the process ended.
    var terminationStatus: Int32 {
        _ = isRunning
        return lock.withLock { exitStatus ?? -1 }
    }

    /// Sends a signal.
    func signal(_ signal: Int32) {
        if isRunning { kill(pid, signal) }
    }

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
            guard isRunning else { throw ChildProcessError(message: "the process exited: \(text)") }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ChildProcessError(message: "no output matching \(pattern) within \(timeout): \(output)")
    }

    /// Waits for the process to end by itself and returns its exit status.
    func waitForExit(timeout: Duration = .seconds(60)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            guard ContinuousClock.now < deadline else {
                kill(pid, SIGKILL)
                throw ChildProcessError(message: "the process did not end within \(timeout): \(output)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return terminationStatus
    }

    /// Sends SIGTERM and waits for the exit status.
    func terminate(timeout: Duration = .seconds(20)) async throws -> Int32 {
        signal(SIGTERM)
        return try await waitForExit(timeout: timeout)
    }

    deinit {
        // Never block here (deinit may run on a concurrency-pool thread); a child killed now
        // stays a zombie until the test process exits.
        if isRunning { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(at: outputURL)
    }
}

struct ChildProcessError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
