import Foundation
import PostgresNIO

extension PostgresClient.Configuration {
    /// Reads a `postgres://user:password@host:port/database?sslmode=disable` URL.
    ///
    /// TLS is not configured here: use `sslmode=disable` (the default) for local and
    /// private-network servers.
    /// - Parameter url: The URL; the scheme must be `postgres` or `postgresql`.
    /// - Throws: ``PostgresURLError`` when the URL is not a PostgreSQL URL.
    public init(url: String) throws {
        guard let components = URLComponents(string: url),
            let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme.lowercased())
        else {
            throw PostgresURLError(message: "Expected a URL of the form postgres://user:password@host:port/database.")
        }
        let database = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        let user = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? "postgres"
        let password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let socketHost = components.queryItems?.first { $0.name == "host" }?.value
        if let socketHost, socketHost.hasPrefix("/") {
            let port = components.port ?? 5432
            self.init(
                unixSocketPath: "\(socketHost)/.s.PGSQL.\(port)",
                username: user,
                password: password,
                database: database.isEmpty ? nil : database
            )
        } else {
            guard let host = components.host, !host.isEmpty else {
                throw PostgresURLError(message: "The database URL has no host.")
            }
            let mode = components.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
            guard mode == "disable" || mode == "prefer" || mode == "allow" else {
                throw PostgresURLError(message: "sslmode=\(mode) is not supported; use sslmode=disable.")
            }
            self.init(
                host: host,
                port: components.port ?? 5432,
                username: user,
                password: password,
                database: database.isEmpty ? nil : database,
                tls: .disable
            )
        }
    }
}

/// A database URL that cannot be used. Its description never contains the password.
public struct PostgresURLError: Error, CustomStringConvertible {
    /// What is wrong.
    public var message: String
    /// The message.
    public var description: String { message }
}
