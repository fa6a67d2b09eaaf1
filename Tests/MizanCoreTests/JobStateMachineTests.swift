import MizanCore
import Testing

@Suite("Job state machine")
struct JobStateMachineTests {
    static let expected: [JobState: [JobTransition: JobState]] = [
        .accepted: [.lease: .leased, .timeOut: .timedOut, .cancel: .failed],
        .leased: [.succeed: .succeeded, .fail: .failed, .timeOut: .timedOut, .cancel: .failed, .requeue: .accepted],
        .succeeded: [:],
        .failed: [:],
        .timedOut: [:],
    ]

    static let pairs: [(JobState, JobTransition)] = JobState.allCases.flatMap { state in
        JobTransition.allCases.map { (state, $0) }
    }

    @Test("every (state, event) pair", arguments: pairs)
    func transition(state: JobState, event: JobTransition) {
        #expect(JobStateMachine.next(from: state, on: event) == Self.expected[state]?[event])
    }

    @Test("terminal states never change", arguments: JobState.terminal)
    func terminal(state: JobState) {
        #expect(state.isTerminal)
        for event in JobTransition.allCases {
            #expect(JobStateMachine.next(from: state, on: event) == nil)
        }
    }

    @Test("sources follow the table", arguments: JobTransition.allCases)
    func sources(event: JobTransition) {
        let fromTable = JobState.allCases.filter { Self.expected[$0]?[event] != nil }
        #expect(JobStateMachine.sources(of: event) == fromTable)
    }

    @Test func liveAndTerminalPartitionStates() {
        #expect(Set(JobState.live).union(JobState.terminal) == Set(JobState.allCases))
        #expect(Set(JobState.live).isDisjoint(with: JobState.terminal))
        #expect(JobState.timedOut.rawValue == "timed_out")
    }
}
