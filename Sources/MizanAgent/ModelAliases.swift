import Foundation
import MizanCore

/// Models a node serves under a public name that its local server knows by another: clients
/// ask for `chat`, the server loaded `chat-8b-instruct-q4` (`mizan-agent --model chat=chat-8b-instruct-q4`).
///
/// The node advertises the public names besides its other models; a ``ProviderHandler`` sends
/// a job for one to its server with the body's `model` rewritten to the local name (the
/// top-level `model` of a JSON body, the `model` field of a form), every other byte unchanged.
/// Answers go back as the server wrote them, as they do from the gateway's provider routes.
public struct ModelAliases: Sendable, Equatable {
    /// The local name of each public name.
    public let locals: [String: String]

    /// Aliases from a table of public name to local name.
    /// - Parameter locals: The local name of each public name (none by default).
    public init(_ locals: [String: String] = [:]) {
        self.locals = locals
    }

    /// Reads `PUBLIC=LOCAL` arguments (the first `=` separates the two; blanks around each are
    /// dropped).
    /// - Parameter arguments: The arguments, one alias each.
    /// - Throws: ``ModelAliasError`` for an argument without `=` or with an empty side, a public
    ///   name given twice, or a name the gateway would refuse (over 256 bytes, control characters).
    public init(parsing arguments: [String]) throws {
        var locals: [String: String] = [:]
        for argument in arguments {
            guard let separator = argument.firstIndex(of: "=") else { throw ModelAliasError(.malformed, argument: argument) }
            let name = argument[..<separator].trimmingCharacters(in: .whitespaces)
            let local = argument[argument.index(after: separator)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, !local.isEmpty else { throw ModelAliasError(.malformed, argument: argument) }
            for part in [name, local] {
                guard (try? ChatCompletionRequest.checkModelName(part)) != nil else {
                    throw ModelAliasError(.invalidName, argument: argument)
                }
            }
            guard locals[name] == nil else { throw ModelAliasError(.duplicateName, argument: argument) }
            locals[name] = local
        }
        self.init(locals)
    }

    /// Whether there are none.
    public var isEmpty: Bool { locals.isEmpty }

    /// The public names, sorted.
    public var names: [String] { locals.keys.sorted() }

    /// The name the local server knows `model` by: its alias's local name, else itself.
    /// - Parameter model: A public model name.
    /// - Returns: The local name.
    public func local(of model: String) -> String { locals[model] ?? model }

    /// The names a model the local server names `local` is served under: itself, and every
    /// public name whose alias points to it.
    /// - Parameter local: A name the local server uses.
    /// - Returns: The names, `local` first, then the public names sorted.
    public func names(servedAs local: String) -> [String] {
        [local] + locals.filter { $0.value == local && $0.key != local }.keys.sorted()
    }

    /// `models` and the public names, each once, in that order.
    /// - Parameter models: The models served besides the aliases.
    /// - Returns: The whole list.
    public func adding(to models: [String]) -> [String] {
        var seen = Set<String>()
        return (models + names).filter { seen.insert($0).inserted }
    }

    /// A job's body with its `model` rewritten to the local name (the body itself when the
    /// model has no alias).
    /// - Parameter job: The job.
    /// - Returns: The body to send to the local server.
    public func upstreamBody(of job: AgentJob) -> Data {
        guard let local = locals[job.model], local != job.model else { return job.body }
        return ClientRequest(endpoint: job.endpoint, body: job.body, model: job.model, stream: job.stream).withModel(local)
    }
}

/// A `PUBLIC=LOCAL` model alias that cannot be used.
public struct ModelAliasError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong with it.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case malformed, duplicateName, invalidName
        }
        private let base: Base

        /// Not `PUBLIC=LOCAL` with both names given.
        public static let malformed = Code(base: .malformed)
        /// A public name given twice.
        public static let duplicateName = Code(base: .duplicateName)
        /// A name the gateway refuses (over 256 bytes, or with control characters).
        public static let invalidName = Code(base: .invalidName)

        public var description: String { base.rawValue }
    }

    /// What is wrong.
    public let code: Code
    /// The argument as given.
    public let argument: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: What is wrong.
    ///   - argument: The argument as given.
    public init(_ code: Code, argument: String) {
        self.code = code
        self.argument = argument
    }

    public var description: String {
        let shown = SafeText.excerpt(argument, limit: 300)
        if code == .duplicateName {
            return "The model alias '\(shown)' names a public model that an earlier alias names already; each public name may have one."
        }
        if code == .invalidName {
            return "The model alias '\(shown)' has a name over \(ChatCompletionRequest.maxModelNameBytes) bytes or with control characters."
        }
        return "The model alias '\(shown)' is not PUBLIC=LOCAL with both names given (e.g. chat=chat-8b-q4)."
    }
}
