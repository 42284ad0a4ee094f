#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import LifelineCore

/// How a rank's exit is judged: the program's own failure, or something else, counted or not.
@Suite struct ExitJudgementTests {
    typealias Exit = ExitJudgement.Exit

    static func context(hosts: Bool = false, mpirun: Bool = false, moving: Bool = false, levels: Bool = false,
                        partnered: Bool = false, launchedBeforeHostLoss: Bool = false) -> ExitJudgement.Context {
        var context = ExitJudgement.Context()
        context.onHosts = hosts
        context.mpirun = mpirun
        context.orderedToMove = moving
        context.levels = levels
        context.partnered = partnered
        context.launchedBeforeHostLoss = launchedBeforeHostLoss
        return context
    }

    /// On one host: a status is the program's, a crash signal is the program's at a step, a kill
    /// from outside is not.
    @Test func onOneHostAStatusOrACrashIsTheProgramsAndAKillIsNot() {
        #expect(ExitJudgement.crashSignals == [SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV])
        let one = Self.context()
        #expect(ExitJudgement.judge(Exit(status: 1, signal: nil), one) == .program(crash: false))
        #expect(ExitJudgement.judge(Exit(status: 3, signal: nil), one) == .program(crash: false), "3 is a lost link on hosts only")
        #expect(ExitJudgement.judge(Exit(status: nil, signal: SIGSEGV), one) == .program(crash: true))
        #expect(ExitJudgement.judge(Exit(status: nil, signal: SIGKILL), one) == .notTheProgram(counted: true))
        #expect(ExitJudgement.judge(Exit(status: nil, signal: SIGTERM), one) == .notTheProgram(counted: true))
    }

    /// On hosts the runtime's statuses are its own only when its runtime said them (a lost link,
    /// which cannot say anything, unless the program said it exits with 3); else the program's.
    @Test func onHostsTheRuntimesStatusesAreItsOwnOnlyWhenSaid() {
        let hosts = Self.context(hosts: true, levels: true, partnered: true)
        #expect(ExitJudgement.judge(Exit(status: 3, signal: nil), hosts) == .notTheProgram(counted: true))
        #expect(ExitJudgement.judge(Exit(status: 3, signal: nil, programSaid: 3), hosts) == .program(crash: false))
        #expect(ExitJudgement.judge(Exit(status: 4, signal: nil, runtimeSaid: 4), hosts) == .restoreFailed)
        #expect(ExitJudgement.judge(Exit(status: 4, signal: nil), hosts) == .program(crash: false))
        #expect(ExitJudgement.judge(Exit(status: 4, signal: nil, runtimeSaid: 4), Self.context(hosts: true, partnered: true))
            == .program(crash: false), "4 is the runtime's with levels only")
        #expect(ExitJudgement.judge(Exit(status: 5, signal: nil, runtimeSaid: 5), hosts) == .logUnfit)
        #expect(ExitJudgement.judge(Exit(status: 5, signal: nil, runtimeSaid: 6), hosts) == .program(crash: false))
        #expect(ExitJudgement.judge(Exit(status: 6, signal: nil, runtimeSaid: 6), hosts) == .notTheProgram(counted: true))
        #expect(ExitJudgement.judge(Exit(status: 6, signal: nil, runtimeSaid: 6), Self.context(hosts: true, partnered: true, launchedBeforeHostLoss: true))
            == .notTheProgram(counted: false), "its log's partner was the host lost")
        #expect(ExitJudgement.judge(Exit(status: 1, signal: nil), Self.context(hosts: true, mpirun: true)) == .notTheProgram(counted: true))
    }

    /// A rank ordered to move is moved when it was killed (by its order, or as its launch command
    /// says a kill); a crash meanwhile is its own.
    @Test func aRankOrderedToMoveIsMovedWhenKilled() {
        let moving = Self.context(hosts: true, moving: true)
        #expect(ExitJudgement.judge(Exit(status: nil, signal: SIGKILL), moving) == .moved)
        #expect(ExitJudgement.judge(Exit(status: 255, signal: nil), moving) == .moved)
        #expect(ExitJudgement.judge(Exit(status: 137, signal: nil), moving) == .moved)
        #expect(ExitJudgement.judge(Exit(status: nil, signal: SIGSEGV), moving) == .program(crash: true))
        #expect(ExitJudgement.judge(Exit(status: 255, signal: nil), Self.context(hosts: true)) == .program(crash: false))
    }
}
