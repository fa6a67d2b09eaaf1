import Foundation
import MizanCore

extension InMemoryStore {
    public func createNode(_ node: Node, registrationTokenHash: Data) async throws -> Node {
        try state.withLock { state in
            guard state.nodes[node.id] == nil else { throw MizanError(.conflict, "A node with id \(node.id) exists.") }
            var node = node
            node.status = .pending
            state.nodes[node.id] = node
            state.registrationHashes[registrationTokenHash] = node.id
            return node
        }
    }

    public func registerNode(
        registrationTokenHash: Data,
        nodeTokenHash: Data,
        report: NodeReport,
        now: Date
    ) async throws -> Node {
        try state.withLock { state in
            guard let id = state.registrationHashes[registrationTokenHash], var node = state.nodes[id],
                node.status == .pending
            else {
                throw MizanError(.invalidNodeToken, "The registration token is invalid or was already used.")
            }
            state.registrationHashes[registrationTokenHash] = nil
            state.tokenHashes[nodeTokenHash] = id
            node.status = .active
            node.apply(report, now: now)
            state.nodes[id] = node
            return node
        }
    }

    public func heartbeat(_ id: NodeID, report: NodeReport, now: Date) async throws -> Node {
        try state.withLock { state in
            guard var node = state.nodes[id] else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
            guard node.status == .active else { throw MizanError(.invalidNodeToken, "The node is not active.") }
            node.apply(report, now: now)
            state.nodes[id] = node
            return node
        }
    }

    public func markConnected(_ id: NodeID, now: Date) async throws -> Node {
        try state.withLock { state in
            guard var node = state.nodes[id] else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
            guard node.status == .active else { throw MizanError(.invalidNodeToken, "The node is not active.") }
            node.disconnectedAt = nil
            node.lastSeen = now
            state.nodes[id] = node
            return node
        }
    }

    public func markDisconnected(_ id: NodeID, unlessSeenAfter: Date?, now: Date) async throws -> Node? {
        state.withLock { state in
            guard var node = state.nodes[id], node.status == .active else { return nil }
            if node.disconnectedAt != nil { return node }
            if let after = unlessSeenAfter, let seen = node.lastSeen, seen > after { return nil }
            node.disconnectedAt = now
            state.nodes[id] = node
            return node
        }
    }

    public func revokeNode(_ id: NodeID, now: Date) async throws -> Node {
        try state.withLock { state in
            guard var node = state.nodes[id] else { throw MizanError(.nodeNotFound, "No node with id \(id).") }
            node.status = .revoked
            state.nodes[id] = node
            state.registrationHashes = state.registrationHashes.filter { $0.value != id }
            return node
        }
    }

    public func nodes() async throws -> [Node] {
        state.withLock {
            $0.nodes.values.sorted { $0.createdAt == $1.createdAt ? $0.id.description < $1.id.description : $0.createdAt < $1.createdAt }
        }
    }

    public func node(_ id: NodeID) async throws -> Node? {
        state.withLock { $0.nodes[id] }
    }

    public func node(tokenHash: Data) async throws -> Node? {
        state.withLock { state in state.tokenHashes[tokenHash].flatMap { state.nodes[$0] } }
    }
}

extension Node {
    /// Applies a node's self-report.
    public mutating func apply(_ report: NodeReport, now: Date) {
        models = report.models
        endpoints = report.endpoints
        maxConcurrency = max(1, report.maxConcurrency)
        health = report.health
        inFlight = report.inFlight
        labels = report.labels
        loadedModels = report.loadedModels ?? []
        lastSeen = now
        // A draining agent said goodbye: it stays disconnected while it finishes its jobs.
        disconnectedAt = report.draining ? (disconnectedAt ?? now) : nil
    }
}
