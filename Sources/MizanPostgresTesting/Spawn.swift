import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Starts child processes for tests with `posix_spawn`, without Foundation's `Process`.
///
/// Children get `/dev/null` as input, a file as output, and none of the parent's other file
/// descriptors: an inherited socket would keep a test's client connection open after the test
/// closed it (so a server never sees the client go away), and Foundation's child-exit
/// detection breaks when its descriptors leak into unrelated children.
package enum Spawn {
    /// Starts `executable`.
    /// - Parameters:
    ///   - executable: The program's path.
    ///   - arguments: Its arguments (without the program name).
    ///   - environment: Extra environment variables (over this process's).
    ///   - outputPath: Where standard output and standard error go.
    ///   - workingDirectory: The child's working directory (this process's by default).
    /// - Returns: The child's process id.
    /// - Throws: When it cannot be started.
    package static func start(
        executable: String, arguments: [String], environment: [String: String] = [:], outputPath: String, workingDirectory: String? = nil
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let workingDirectory {
            guard let chdir = changeDirectory else {
                throw ThrowawayPostgres.StartError(message: "this C library cannot start a child in another working directory")
            }
            _ = workingDirectory.withCString { chdir(&actions, $0) }
        }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        if let closeFrom = closeFrom { _ = closeFrom(&actions, 3) }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let merged = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let envp: [UnsafeMutablePointer<CChar>?] = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        guard result == 0 else {
            throw ThrowawayPostgres.StartError(message: "could not start \(executable): \(String(cString: strerror(result)))")
        }
        return pid
    }

    /// glibc's `posix_spawn_file_actions_addchdir_np` (2.29 and later), looked up at run time.
    private static let changeDirectory:
        (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)? = {
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else { return nil }
            return unsafeBitCast(
                symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
        }()

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), looked up at run time.
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()
}
