// Mizan's own tests get the kit it ships (servers, the manual clock, the conformance suite).
@_exported import MizanTesting
