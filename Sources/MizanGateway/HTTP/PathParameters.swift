import Hummingbird
import MizanCore

extension GatewayRequestContext {
    /// The job id of a `/…/jobs/{id}` path.
    /// - Throws: `MizanError` `badRequest` when it is not a valid id.
    func jobID() throws -> JobID {
        guard let raw = parameters.get("id"), let id = JobID(raw) else {
            throw MizanError(.badRequest, "The job id in the path is not a valid id.")
        }
        return id
    }
}
