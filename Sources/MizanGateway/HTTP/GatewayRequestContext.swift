import Foundation
import Hummingbird
import MizanCore
import NIOCore
import Synchronization

/// The request context of the gateway's router: Hummingbird's core storage plus the
/// request's ``RequestRecord``, which the request middleware logs and records once the
/// response has been written.
public struct GatewayRequestContext: RequestContext {
    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// What this request was and how it was served.
    let record: RequestRecord
    /// The client's connection (to notice the client going away).
    let channel: (any Channel)?

    /// Creates a context for a request arriving on a connection.
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        record = RequestRecord()
        channel = source.channel
    }

    /// The client's IP address, when the connection has one.
    public var clientAddress: String? { channel?.remoteAddress?.ipAddress }

    /// Bodies decoded by `request.decode` (admin and agent calls) stay small.
    public var maxUploadSize: Int { 1 << 20 }
}
