import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A PostgreSQL server started for one test or benchmark process: `initdb` into a temporary
/// directory, a free loopback port, the socket in that directory, and stopped when the process
/// ends (a watchdog stops it even if the process crashes).
///
/// When running as root the server runs as the unprivileged `postgres` user, since
/// PostgreSQL refuses to run as root. Set `MIZAN_TEST_POSTGRES_URL` to use an existing
/// server instead.
public final class ThrowawayPostgres: Sendable {
    /// Why no server could be started; the message says what to install.
    public struct StartError: Error, CustomStringConvertible {
        /// What went wrong and what to do.
        public var message: String
        public var description: String { message }
    }

    /// The loopback port.
    public let port: Int
    /// The superuser name.
    public let user: String
    /// The data directory.
    public let directory: URL
    private let binDirectory: URL
    private let runAs: [String]

    /// The URL of the server's `postgres` database.
    public var url: String { "postgres://\(user)@127.0.0.1:\(port)/postgres" }

    private static let shared = Mutex<Result<ThrowawayPostgres, StartError>?>(nil)

    /// The server of this process, started on first use.
    /// - Returns: The running server.
    /// - Throws: ``StartError`` when PostgreSQL is not installed or does not start.
    public static func start() throws -> ThrowawayPostgres {
        try shared.withLock { state in
            if let state { return try state.get() }
            let result = Result { try ThrowawayPostgres() }.mapError { $0 as? StartError ?? StartError(message: "\($0)") }
            state = result
            if case .success(let server) = result {
                server.armStop()
            }
            return try result.get()
        }
    }

    /// The server of this process, started on first use, waited for off the concurrency pool:
    /// starting takes seconds of blocking work (initdb, pg_ctl) and concurrent callers wait on
    /// a lock, which on a small machine would stall every other task.
    /// - Returns: The running server.
    /// - Throws: ``StartError`` when PostgreSQL is not installed or does not start.
    public static func started() async throws -> ThrowawayPostgres {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try start() }) }
            thread.start()
        }
    }

    /// A server of its own, not shared with the rest of the process (for a test that restarts
    /// or stops it); ``stop()`` it at the end (it is stopped when the process ends too).
    /// - Returns: The running server.
    public static func dedicated() async throws -> ThrowawayPostgres {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(
                    with: Result {
                        let server = try ThrowawayPostgres()
                        server.armWatchdog()
                        return server
                    })
            }
            thread.start()
        }
    }

    /// Restarts the server on the same port (its connections are closed), waiting `down`
    /// between the stop and the start: a database restart as operators make them.
    public func restart(down: Duration = .zero) async throws {
        let data = directory.appendingPathComponent("data").path
        let pgctl = binDirectory.appendingPathComponent("pg_ctl").path
        let runAs = runAs
        let port = port
        let directory = directory.path
        try await Self.offPool { try Self.capture(runAs + [pgctl, "stop", "-D", data, "-m", "fast", "-w"]) }
        try await Task.sleep(for: down)
        try await Self.offPool {
            try Self.capture(
                runAs + [
                    pgctl, "start", "-D", data, "-w", "-t", "60", "-o", Self.options(port: port, socketDirectory: directory), "-l",
                    directory + "/log",
                ])
        }
    }

    /// Runs blocking work on a thread of its own.
    private static func offPool(_ work: @escaping @Sendable () throws -> Void) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread { continuation.resume(with: Result { try work() }) }.start()
        }
    }

    /// The server's options.
    static func options(port: Int, socketDirectory: String) -> String {
        [
            "-p \(port)", "-k \(socketDirectory)", "-c listen_addresses=127.0.0.1",
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off", "-c max_connections=300",
            "-c shared_buffers=128MB",
        ].joined(separator: " ")
    }

    private init() throws {
        guard let bin = Self.findBinaries() else {
            throw StartError(
                message:
                    "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH, via pg_config or in /usr/lib/postgresql/*/bin. "
                    + "Install them (Debian: apt-get update && apt-get install -y postgresql) or set MIZAN_TEST_POSTGRES_URL."
            )
        }
        binDirectory = bin
        let isRoot = geteuid() == 0
        if isRoot {
            guard getpwnam("postgres") != nil else {
                throw StartError(
                    message:
                        "Running as root, PostgreSQL needs an unprivileged 'postgres' user; install the postgresql package or "
                        + "create the user."
                )
            }
            runAs =
                FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser")
                ? ["/usr/sbin/runuser", "-u", "postgres", "--"]
                : ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        } else {
            runAs = []
        }
        user = "mizan"
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-pg-\(getpid())-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if isRoot {
            try Self.capture(["/bin/chown", "postgres:postgres", directory.path])
        }
        let data = directory.appendingPathComponent("data").path
        try Self.capture(
            runAs + [
                bin.appendingPathComponent("initdb").path, "-D", data, "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync",
                "--no-instructions",
            ])
        port = try Self.startServer(
            pgctl: bin.appendingPathComponent("pg_ctl").path, data: data, socketDirectory: directory.path, runAs: runAs)
    }

    /// Starts the server on a free port and answers the port.
    ///
    /// A port is free when chosen but can be taken before the server binds it (by another
    /// listener, or by a client connection's local port on a busy test machine): a server that
    /// did not start is tried again on another port, and the last failure carries the server's
    /// own log.
    private static func startServer(pgctl: String, data: String, socketDirectory: String, runAs: [String]) throws -> Int {
        let log = socketDirectory + "/log"
        var attempt = 0
        while true {
            attempt += 1
            let port = try freePort()
            let options = options(port: port, socketDirectory: socketDirectory)
            do {
                try capture(runAs + [pgctl, "start", "-D", data, "-w", "-t", "60", "-o", options, "-l", log])
                return port
            } catch let error as StartError {
                let lastLines = tail(ofFile: log, lines: 20)
                // A server that timed out may still be starting: stop it before trying again.
                _ = try? capture(runAs + [pgctl, "stop", "-D", data, "-m", "immediate", "-w"])
                if attempt >= startAttempts {
                    throw StartError(message: "\(error.message)\nThe server's log (\(log)), last lines:\n\(lastLines)")
                }
            }
        }
    }

    /// How many ports a server is tried on before giving up.
    static let startAttempts = 4

    /// The last `lines` lines of a text file (empty when it cannot be read).
    static func tail(ofFile path: String, lines: Int) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Stops the server and removes its directory.
    public func stop() {
        let data = directory.appendingPathComponent("data").path
        _ = try? Self.capture(runAs + [binDirectory.appendingPathComponent("pg_ctl").path, "stop", "-D", data, "-m", "immediate", "-w"])
        try? FileManager.default.removeItem(at: directory)
    }

    /// Stops the server when this process exits, normally (`atexit`) or not (a watchdog).
    private func armStop() {
        armWatchdog()
        atexit {
            if case .success(let server)? = ThrowawayPostgres.shared.withLock({ $0 }) { server.stop() }
        }
    }

    /// Stops the server when this process ends without stopping it (a watchdog process).
    private func armWatchdog() {
        let data = directory.appendingPathComponent("data").path
        let pgctl = (runAs + [binDirectory.appendingPathComponent("pg_ctl").path]).map { "'\($0)'" }.joined(separator: " ")
        let script =
            "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(pgctl) stop -D '\(data)' -m immediate >/dev/null 2>&1; "
            + "rm -rf '\(directory.path)'"
        // The watchdog must not hold the test runner's output pipe (or anything else) open.
        _ = try? Spawn.start(executable: "/bin/sh", arguments: ["-c", script], outputPath: "/dev/null")
    }

    static func findBinaries() -> URL? {
        let fm = FileManager.default
        func has(_ dir: String) -> Bool {
            fm.isExecutableFile(atPath: dir + "/initdb") && fm.isExecutableFile(atPath: dir + "/pg_ctl")
        }
        if let env = ProcessInfo.processInfo.environment["MIZAN_POSTGRES_BIN"], has(env) { return URL(fileURLWithPath: env) }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) where has(dir) {
            // Debian's /usr/bin wrappers are not the server binaries; follow links to the real ones.
            let resolved = URL(fileURLWithPath: dir + "/initdb").resolvingSymlinksInPath().deletingLastPathComponent().path
            if has(resolved) { return URL(fileURLWithPath: resolved) }
        }
        if let bindir = try? capture(["pg_config", "--bindir"]).trimmingCharacters(in: .whitespacesAndNewlines), has(bindir) {
            return URL(fileURLWithPath: bindir)
        }
        let versions = (try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) where has("/usr/lib/postgresql/\(version)/bin") {
            return URL(fileURLWithPath: "/usr/lib/postgresql/\(version)/bin")
        }
        return nil
    }

    /// A loopback port nothing listens on, chosen below the kernel's ephemeral range when it
    /// can be (client connections take their local ports from that range, so a port there can
    /// be taken by any connection between this check and the server's bind).
    static func freePort() throws -> Int {
        let ephemeralStart =
            (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
            .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32768
        if ephemeralStart > 20000 {
            for _ in 0..<64 {
                let port = Int.random(in: 15000..<ephemeralStart)
                if (try? bindLoopback(port: port)) != nil { return port }
            }
        }
        return try bindLoopback(port: 0)
    }

    /// Binds a loopback socket to `port` (0: any), closes it and answers the port it had.
    private static func bindLoopback(port: Int) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StartError(message: "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw StartError(message: "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a command to completion with `posix_spawn` and `waitpid`, its output in a file.
    ///
    /// Foundation's `Process` waits through a dispatch source, which can starve when every
    /// thread of the small concurrency pool is blocked; a plain `waitpid` cannot.
    @discardableResult
    static func capture(_ arguments: [String]) throws -> String {
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("mizan-cmd-\(UUID().uuidString)").path
        defer { unlink(outputPath) }
        let pid = try Spawn.start(executable: "/usr/bin/env", arguments: arguments, outputPath: outputPath)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        let exitCode = (status >> 8) & 0xff
        guard status & 0x7f == 0, exitCode == 0 else {
            throw StartError(message: "\(arguments.joined(separator: " ")) failed (status \(status)): \(text)")
        }
        return text
    }
}
