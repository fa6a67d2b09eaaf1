// One Mizan agent node in front of two local servers, each serving its own models: say Ollama
// for llama3 and a vLLM box for qwen. The node reports the models of both; a job goes to the
// server of its model.
//
//   MIZAN_REGISTRATION_TOKEN=mzn_reg_… swift run multi-backend-agent \
//       llama3=http://127.0.0.1:11434/v1 qwen2.5=http://127.0.0.1:8000/v1
import Foundation
import Logging
import MizanAgent
import ServiceLifecycle

// MODEL=URL pairs from the command line.
var backends: [String: any JobHandler] = [:]
for argument in CommandLine.arguments.dropFirst() {
    let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
    guard parts.count == 2 else {
        FileHandle.standardError.write(Data("usage: multi-backend-agent MODEL=URL [MODEL=URL…]\n".utf8))
        exit(2)
    }
    backends[parts[0]] = .provider(parts[1], models: [parts[0]])
}

let environment = ProcessInfo.processInfo.environment
let logger = Logger(label: "multi-backend-agent")
let agent = Agent(
    configuration: .init(
        gatewayURL: environment["MIZAN_GATEWAY"] ?? "http://127.0.0.1:8080",
        registrationToken: environment["MIZAN_REGISTRATION_TOKEN"],
        tokenFile: environment["MIZAN_TOKEN_FILE"] ?? "multi-backend-agent.token",
        maxConcurrency: 8
    ),
    handler: .byModel(backends),
    logger: logger
)
try await ServiceGroup(services: [agent], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
