// The manual clock and the store conformance suite come with the kit.
@_exported import MizanStoreTesting
